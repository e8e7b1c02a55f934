// A Server-Sent Events reader over a fetch body (WHATWG parsing rules), so that
// streams work the same in Node, edge runtimes and browsers, with headers and AbortSignal.

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/** Decodes lines into messages; feed it one line at a time (without the line break). */
export class SseDecoder {
  private event = "message";
  private id: string | null = null;
  private data: string[] = [];

  feed(line: string): SseMessage | null {
    if (line === "") {
      const message = this.data.length ? { id: this.id, event: this.event, data: this.data.join("\n") } : null;
      this.event = "message";
      this.id = null;
      this.data = [];
      return message;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id") this.id = value;
    return null;
  }
}

/** The messages of a text/event-stream body; `onChunk` is told of every chunk (heartbeats included). */
export async function* readSse(body: ReadableStream<Uint8Array>, onChunk: () => void): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const sse = new SseDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      onChunk();
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        const message = sse.feed(line);
        if (message) yield message;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
