// genline-client.js: @genline/client 0.1.0, bundled from clients/js (do not edit; npm run build:web).

// src/errors.ts
var GenlineError = class extends Error {
  constructor(message, code = "error", status = 0) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
  }
};
var ApiError = class extends GenlineError {
  constructor(status, code, message, fields, headers) {
    super(message, code, status);
    this.fields = fields ?? {};
    this.headers = headers ?? {};
  }
};
var RateLimited = class extends ApiError {
  constructor(status, code, message, fields, headers, retryAfterMs2 = null) {
    super(status, code, message, fields, headers);
    this.idempotencyKey = null;
    this.retryAfterMs = retryAfterMs2;
  }
};
var ConnectionFailed = class extends GenlineError {
  constructor(message, options) {
    super(message, "connection_failed", 0);
    if (options && "cause" in options) this.cause = options.cause;
  }
};
var JobEnded = class extends GenlineError {
  constructor(job) {
    const code = job.error?.code ?? job.status;
    super(job.error?.message || `job ${job.id} ${job.status}`, code, 0);
    this.job = job;
    this.jobId = job.id;
  }
};
var JobFailed = class extends JobEnded {
};
var JobCanceled = class extends JobEnded {
};
var WaitTimeout = class extends GenlineError {
  constructor(jobId, timeoutMs, canceled) {
    const rest = canceled ? "; the job was canceled" : "; the job goes on";
    super(`job ${jobId} did not end within the client's ${timeoutMs} ms wait${rest}`, "wait_timeout", 0);
    this.jobId = jobId;
    this.timeoutMs = timeoutMs;
    this.canceled = canceled;
  }
};
var WebhookVerificationError = class extends GenlineError {
  constructor(message) {
    super(message, "webhook_verification_failed", 0);
  }
};

// src/http.ts
var RETRY_STATUSES = /* @__PURE__ */ new Set([429, 500, 502, 503, 504]);
var CONNECT_CODES = /* @__PURE__ */ new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "UND_ERR_CONNECT_TIMEOUT"]);
function backoffMs(attempt, baseMs = 500, capMs = 8e3, rng = Math.random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** attempt);
  return ceiling / 2 + ceiling / 2 * rng();
}
function retryAfterMs(value, now = Date.now()) {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1e3;
  const when = Date.parse(trimmed);
  return Number.isNaN(when) ? null : Math.max(0, when - now);
}
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
  }
  const error = body && typeof body.error === "object" && body.error ? body.error : {};
  const status = response.status;
  const code = error.code || (status === 429 ? "rate_limited" : "http_error");
  const message = error.message || `genline answered HTTP ${status}`;
  const headers = {};
  response.headers.forEach((value, name) => headers[name] = value);
  if (status === 429) {
    return new RateLimited(status, code, message, error.fields, headers, retryAfterMs(response.headers.get("retry-after")));
  }
  return new ApiError(status, code, message, error.fields, headers);
}
function beforeSending(err) {
  const cause = err?.cause;
  return Boolean(cause && cause.code && CONNECT_CODES.has(cause.code));
}
async function send(policy, method, url, options = {}) {
  const headers = { ...options.headers || {} };
  if (options.body !== void 0) headers["Content-Type"] = "application/json";
  const safe = method === "GET" || "Idempotency-Key" in headers;
  const init = { method, headers, signal: options.signal };
  if (options.body !== void 0) init.body = JSON.stringify(options.body);
  else if (options.form) init.body = options.form;
  for (let attempt = 0; ; attempt++) {
    const last = attempt >= policy.maxRetries;
    let response;
    try {
      response = await policy.fetch(url, init);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (last || !(safe || beforeSending(err))) {
        throw new ConnectionFailed(`${method} ${url}: ${err?.message ?? err}`, { cause: err });
      }
      await sleep(backoffMs(attempt), options.signal);
      continue;
    }
    if (response.ok) return response;
    const error = await errorFrom(response);
    const wait = error instanceof RateLimited ? error.retryAfterMs : null;
    if (last || !RETRY_STATUSES.has(response.status) || (wait ?? 0) > policy.maxRetryAfterMs) {
      if (error instanceof RateLimited) error.idempotencyKey = headers["Idempotency-Key"] ?? null;
      throw error;
    }
    await sleep(wait ?? backoffMs(attempt), options.signal);
  }
}

// src/sse.ts
var SseDecoder = class {
  constructor() {
    this.event = "message";
    this.id = null;
    this.data = [];
  }
  feed(line) {
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
};
async function* readSse(body, onChunk) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const sse = new SseDecoder();
  let buffer = "";
  try {
    for (; ; ) {
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
    reader.cancel().catch(() => {
    });
  }
}

// src/types.ts
var TERMINAL = /* @__PURE__ */ new Set(["completed", "failed", "canceled"]);

// src/webhooks.ts
var TOLERANCE_S = 300;
function header(headers, name) {
  if (typeof headers.get === "function") return headers.get(name);
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(" ") : value ?? null;
  }
  return null;
}
async function subtle() {
  if (globalThis.crypto?.subtle) return globalThis.crypto.subtle;
  const name = "node:crypto";
  const mod = await import(name);
  return mod.webcrypto.subtle;
}
function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
function bytesToBase64(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}
function sameString(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
async function verify(body, headers, secret, options = {}) {
  const id = header(headers, "webhook-id");
  const stamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !stamp || !signatures) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header");
  }
  const sent = Number(stamp);
  if (!Number.isInteger(sent)) throw new WebhookVerificationError("webhook-timestamp is not a whole number of seconds");
  const tolerance = options.toleranceS ?? TOLERANCE_S;
  const now = options.nowS ?? Date.now() / 1e3;
  if (Math.abs(now - sent) > tolerance) {
    throw new WebhookVerificationError(`webhook-timestamp is more than ${tolerance} s from now`);
  }
  let key;
  try {
    key = base64ToBytes(secret.startsWith("whsec_") ? secret.slice(6) : secret);
  } catch {
    throw new WebhookVerificationError("the secret is not a whsec_<base64> signing secret");
  }
  const raw = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const prefix = new TextEncoder().encode(`${id}.${stamp}.`);
  const signed = new Uint8Array(prefix.length + raw.length);
  signed.set(prefix);
  signed.set(raw, prefix.length);
  const crypto = await subtle();
  const hmac = await crypto.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const expected = bytesToBase64(new Uint8Array(await crypto.sign("HMAC", hmac, signed)));
  const offered = signatures.split(" ").filter((s) => s.startsWith("v1,")).map((s) => s.slice(3));
  if (!offered.some((s) => sameString(s, expected))) {
    throw new WebhookVerificationError("no webhook-signature matches this body and secret");
  }
  try {
    return { id, ...JSON.parse(new TextDecoder().decode(raw)) };
  } catch {
    throw new WebhookVerificationError("the body is not JSON");
  }
}

// src/client.ts
var LONG_POLL_S = 20;
var FIRST_LONG_POLL_S = 5;
var STREAM_SILENCE_MS = 45e3;
var USER_AGENT_HEADER = "X-Genline-Client";
var StreamCut = class extends Error {
};
function outcome(job) {
  if (job.status === "failed") throw new JobFailed(job);
  if (job.status === "canceled") throw new JobCanceled(job);
  return job;
}
function newKey() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return `genline-js-${c.randomUUID()}`;
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  return `genline-js-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
var Genline = class {
  constructor(options = {}) {
    this.webhooks = { verify };
    const origin = globalThis.location?.origin;
    this.baseUrl = (options.baseUrl ?? origin ?? "http://127.0.0.1:8000").replace(/\/+$/, "");
    this.apiKey = options.apiKey || null;
    const chosen = options.fetch;
    this.policy = {
      maxRetries: options.maxRetries ?? 4,
      maxRetryAfterMs: options.maxRetryAfterMs ?? 6e4,
      // Called through a wrapper: browsers refuse a fetch invoked as a method of another object.
      fetch: (input, init) => (chosen ?? globalThis.fetch)(input, init)
    };
    this.jobs = new Jobs(this);
    this.uploads = new Uploads(this);
  }
  /** @internal */
  headers(extra = {}) {
    const out = { ...extra };
    if (this.apiKey) {
      out.Authorization = `Bearer ${this.apiKey}`;
      out[USER_AGENT_HEADER] = "js/0.1.0";
    }
    return out;
  }
  /** @internal */
  url(path) {
    return /^https?:\/\//.test(path) ? path : `${this.baseUrl}${path}`;
  }
  /** Create a job and wait for it: the completed job, or JobFailed / JobCanceled / WaitTimeout. */
  async run(body, options = {}) {
    const { idempotencyKey, endpoint, signal } = options;
    const job = await this.jobs.create(body, { idempotencyKey, endpoint, signal });
    return this.jobs.wait(job, { ...options, cancelOnTimeout: options.cancelOnTimeout ?? true });
  }
};
var Uploads = class {
  constructor(c) {
    this.c = c;
  }
  /** Upload an image (a Blob or File, or bytes); resolves with its `upl_` id, media type and size. */
  async create(file, options = {}) {
    const form = new FormData();
    const blob = file instanceof Blob ? file : new Blob([file]);
    form.append("file", blob, options.filename ?? file.name ?? "image");
    const response = await send(
      this.c.policy,
      "POST",
      this.c.url("/v1/uploads"),
      { form, headers: this.c.headers(), signal: options.signal }
    );
    return await response.json();
  }
};
var Jobs = class {
  constructor(c) {
    this.c = c;
  }
  target(ref) {
    const jobId = typeof ref === "string" ? ref : ref.id;
    const urls = typeof ref === "string" ? null : ref.urls;
    const base = this.c.url(`/v1/jobs/${encodeURIComponent(jobId)}`);
    if (this.c.apiKey || !urls?.self) return { jobId, self: base, events: `${base}/events`, cancel: `${base}/cancel` };
    return { jobId, self: urls.self, events: urls.events ?? `${base}/events`, cancel: urls.cancel ?? `${base}/cancel` };
  }
  async json(method, url, options = {}) {
    const response = await send(this.c.policy, method, url, { ...options, headers: this.c.headers(options.headers) });
    return await response.json();
  }
  /** Submit a job. One idempotency key per call, sent on every retry: a retried call never makes a second job. */
  create(body, options = {}) {
    const headers = { "Idempotency-Key": options.idempotencyKey ?? newKey() };
    if (options.waitS) headers.Prefer = `wait=${Math.floor(options.waitS)}`;
    return this.json("POST", this.c.url(options.endpoint ?? "/v1/jobs"), { body, headers, signal: options.signal });
  }
  /** The job; with `waitS` (≤ 60) the server holds the answer until it ends or that time passes. */
  get(ref, options = {}) {
    const url = new URL(this.target(ref).self);
    if (options.waitS) url.searchParams.set("wait", String(Math.floor(options.waitS)));
    return this.json("GET", url.toString(), { signal: options.signal });
  }
  /** Jobs newest first: `for await (const job of jobs.list())`, or `.pages()` for each page. */
  list(query = {}, options = {}) {
    const jobs = this;
    async function* pages() {
      let cursor = null;
      do {
        const url = new URL(jobs.c.url("/v1/jobs"));
        for (const [name, value] of Object.entries(query)) {
          if (value !== void 0 && value !== null) url.searchParams.set(name, Array.isArray(value) ? value.join(",") : String(value));
        }
        if (cursor) url.searchParams.set("cursor", cursor);
        const page = await jobs.json("GET", url.toString(), { signal: options.signal });
        yield page;
        cursor = page.next_cursor;
      } while (cursor);
    }
    return {
      pages,
      async *[Symbol.asyncIterator]() {
        for await (const page of pages()) yield* page.data;
      }
    };
  }
  /** Cancel a queued or processing job (ApiError 409 `conflict` if it had already ended). */
  cancel(ref, options = {}) {
    return this.json("POST", this.target(ref).cancel, options);
  }
  /** Resume a failed or canceled job from the step that did not finish (ApiError 409 otherwise). */
  retry(ref, options = {}) {
    const id = typeof ref === "string" ? ref : ref.id;
    return this.json("POST", this.c.url(`/v1/jobs/${encodeURIComponent(id)}/retry`), options);
  }
  /** Cancel every active job matching all the filters given (at least one). */
  cancelMany(filter, options = {}) {
    return this.json("POST", this.c.url("/v1/jobs/cancel"), { body: filter, signal: options.signal });
  }
  /** Every event after `lastEventId`, once each, in order, until the job ends; a broken stream is reopened. */
  async *stream(ref, options = {}) {
    let last = options.lastEventId ?? null;
    let failures = 0;
    for (; ; ) {
      const state = { ended: false };
      try {
        for await (const event of this.eventsOnce(ref, last, state, options.signal)) {
          last = event.id;
          failures = 0;
          yield event;
        }
      } catch (err) {
        if (!(err instanceof StreamCut)) throw err;
        if (failures >= this.c.policy.maxRetries) {
          throw new ConnectionFailed(`the event stream of ${this.target(ref).jobId} kept breaking`, { cause: err });
        }
        await sleep(backoffMs(failures++), options.signal);
        continue;
      }
      if (state.ended) return;
    }
  }
  /**
   * Follow the job until it ends: the completed job, or JobFailed / JobCanceled.
   * SSE first; when the stream is cut, one long-poll, then the stream resumes
   * from the last event seen, so `onUpdate` sees every event once. After
   * `timeoutMs` (the client's wait) WaitTimeout carries the job id.
   */
  async wait(ref, options = {}) {
    const { timeoutMs, signal } = options;
    if (signal?.aborted) throw signal.reason;
    const inner = new AbortController();
    const onAbort = () => inner.abort(signal.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    const timer = timeoutMs == null ? void 0 : setTimeout(() => {
      timedOut = true;
      inner.abort(new Error("the client's wait ran out"));
    }, timeoutMs);
    const deadline = timeoutMs == null ? null : Date.now() + timeoutMs;
    try {
      return outcome(await this.follow(ref, deadline, inner.signal, options));
    } catch (err) {
      if (!timedOut || err instanceof JobFailed || err instanceof JobCanceled) throw err;
      let canceled = false;
      if (options.cancelOnTimeout) {
        await this.cancel(ref, { signal });
        canceled = true;
      }
      throw new WaitTimeout(this.target(ref).jobId, timeoutMs, canceled);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
  async follow(ref, deadline, signal, options) {
    let last = null;
    let cuts = 0;
    let idle = 0;
    for (; ; ) {
      const state = { ended: false };
      try {
        for await (const event of this.eventsOnce(ref, last, state, signal)) {
          last = event.id;
          idle = 0;
          cuts = 0;
          options.onUpdate?.(event);
          if (event.type === "progress") options.onProgress?.(event.data.fraction, event.data.message ?? null, event);
        }
      } catch (err) {
        if (!(err instanceof StreamCut)) throw err;
        cuts++;
        let hold = Math.min(LONG_POLL_S, FIRST_LONG_POLL_S * cuts);
        if (deadline !== null) hold = Math.max(1, Math.min(hold, Math.floor((deadline - Date.now()) / 1e3)));
        const current = await this.get(ref, { waitS: hold, signal });
        if (TERMINAL.has(current.status) && cuts >= 3) return current;
        continue;
      }
      cuts = 0;
      if (state.ended) {
        const current = await this.get(ref, { signal });
        if (TERMINAL.has(current.status)) return current;
      }
      if (++idle > 1) await sleep(Math.min(2e3, backoffMs(idle)), signal);
    }
  }
  /** One connection to the event stream; `state.ended` once the job's stream is over (terminal event or 204). */
  async *eventsOnce(ref, last, state, signal) {
    const url = new URL(this.target(ref).events);
    if (last !== null) url.searchParams.set("last_event_id", String(last));
    const connection = new AbortController();
    const onAbort = () => connection.abort(signal.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => connection.abort(new StreamCut("the event stream went silent")), STREAM_SILENCE_MS);
    };
    const cut = (err) => {
      if (signal?.aborted) throw signal.reason;
      throw new StreamCut(String(err?.message ?? err));
    };
    try {
      arm();
      let response;
      try {
        response = await this.c.policy.fetch(url.toString(), {
          headers: this.c.headers({ Accept: "text/event-stream" }),
          signal: connection.signal
        });
      } catch (err) {
        return cut(err);
      }
      if (response.status === 204) {
        state.ended = true;
        return;
      }
      if (!response.ok || !response.body) {
        if (RETRY_STATUSES.has(response.status) || response.ok) return cut(`HTTP ${response.status}`);
        throw await errorFrom(response);
      }
      let messages;
      messages = readSse(response.body, arm);
      for (; ; ) {
        let next;
        try {
          next = await messages.next();
        } catch (err) {
          return cut(err);
        }
        if (next.done) return;
        const event = JSON.parse(next.value.data);
        if (last !== null && event.id <= last) continue;
        last = event.id;
        state.ended = TERMINAL.has(event.type);
        yield event;
      }
    } finally {
      clearTimeout(watchdog);
      signal?.removeEventListener("abort", onAbort);
      connection.abort();
    }
  }
};

// src/index.ts
var VERSION = "0.1.0";
export {
  ApiError,
  ConnectionFailed,
  Genline,
  GenlineError,
  JobCanceled,
  JobEnded,
  JobFailed,
  Jobs,
  RateLimited,
  SseDecoder,
  TERMINAL,
  Uploads,
  VERSION,
  WaitTimeout,
  WebhookVerificationError,
  backoffMs,
  retryAfterMs,
  verify as verifyWebhook
};
