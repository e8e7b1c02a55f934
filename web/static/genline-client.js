// genline-client.js: a small client for genline jobs. Copy this file into your app.
//
//   submit(url, body, {apiKey})  POST a job (server side, with the API key) -> the job
//   stream(eventsUrl, {onEvent, onProgress, signal})  live events until the job ends
//                                -> resolves with the terminal event (completed, failed, canceled)
//   cancel(cancelUrl, {apiKey})  cancel a running job -> the job
//   getJob(selfUrl)              read the job (its urls.self carries a read token)
//
// No dependencies: fetch and EventSource (browsers; Node 18+ has fetch).
// The API key stays on your server: submit there and hand the browser
// job.urls.events and job.urls.self, which carry a job-scoped read token.

export const TERMINAL = new Set(["completed", "failed", "canceled"]);
const EVENT_TYPES = ["queued", "started", "progress", "retry", "completed", "failed", "canceled"];

/** A non-2xx answer: `code`, `message` and `fields` from genline's error shape, and the HTTP `status`. */
export class GenlineError extends Error {
  constructor(status, error = {}) {
    super(error.message || `genline answered HTTP ${status}`);
    this.name = "GenlineError";
    this.status = status;
    this.code = error.code || "http_error";
    this.fields = error.fields || {};
  }
}

async function readJob(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's error page): fall through to a GenlineError with the status
  }
  if (!response.ok) throw new GenlineError(response.status, body && body.error);
  return body;
}

function headersFor({ apiKey, headers } = {}) {
  const out = { "Content-Type": "application/json", ...(headers || {}) };
  if (apiKey) out.Authorization = `Bearer ${apiKey}`;
  return out;
}

/** POST a job. `options.wait` (seconds, at most 60) holds the answer until the job ends. */
export async function submit(url, body, options = {}) {
  const { fetch: doFetch = globalThis.fetch, signal, wait, idempotencyKey } = options;
  const headers = headersFor(options);
  if (wait) headers.Prefer = `wait=${wait}`;
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  const response = await doFetch(url, { method: "POST", headers, body: JSON.stringify(body), signal });
  return readJob(response);
}

/** Cancel a job; resolves with the job (a GenlineError with status 409 if it had already ended). */
export async function cancel(url, options = {}) {
  const { fetch: doFetch = globalThis.fetch, signal } = options;
  const response = await doFetch(url, { method: "POST", headers: headersFor(options), signal });
  return readJob(response);
}

/** Read a job once (use job.urls.self, or any job URL with an API key on the server). */
export async function getJob(url, options = {}) {
  const { fetch: doFetch = globalThis.fetch, signal } = options;
  const { "Content-Type": _ignored, ...headers } = headersFor(options);
  return readJob(await doFetch(url, { headers, signal }));
}

/**
 * Follow a job's events until it ends. Every event arrives once, in order, even
 * across reconnects: EventSource resumes with Last-Event-ID and genline replays
 * what was missed. Resolves with the terminal event; rejects if the stream
 * cannot be opened (bad token, unknown job) or `signal` aborts.
 */
export function stream(eventsUrl, options = {}) {
  const { onEvent, onProgress, signal, EventSource: ES = globalThis.EventSource } = options;
  return new Promise((resolve, reject) => {
    const source = new ES(eventsUrl);
    let lastSeq = 0;
    const finish = (settle, value) => {
      source.close();
      settle(value);
    };
    const handle = (message) => {
      const event = JSON.parse(message.data);
      if (event.id <= lastSeq) return;
      lastSeq = event.id;
      if (onEvent) onEvent(event);
      if (event.type === "progress" && onProgress) onProgress(event.data.fraction, event.data.message);
      if (TERMINAL.has(event.type)) finish(resolve, event);
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, handle);
    // While the state is CONNECTING the browser reconnects by itself; CLOSED means it gave up.
    source.onerror = () => {
      if (source.readyState === ES.CLOSED) {
        finish(reject, new GenlineError(0, { code: "stream_failed", message: "the event stream could not be opened" }));
      }
    };
    if (signal) {
      signal.addEventListener("abort", () => finish(reject, signal.reason || new Error("aborted")), { once: true });
    }
  });
}
