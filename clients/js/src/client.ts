// Genline: the client. Jobs are read by id with the API key, or through a job's
// token URLs (urls.self, urls.events) by a browser that never holds the key.
import { ConnectionFailed, JobCanceled, JobFailed, WaitTimeout } from "./errors.js";
import { backoffMs, errorFrom, type Fetch, RETRY_STATUSES, type RetryPolicy, send, sleep } from "./http.js";
import { readSse } from "./sse.js";
import {
  TERMINAL, type Job, type JobCreate, type JobEvent, type JobRef, type ListQuery, type Page, type Upload,
} from "./types.js";
import { verify } from "./webhooks.js";

const LONG_POLL_S = 20;
// The long-poll after a first cut is short (progress pauses while it holds); it grows while cuts go on.
const FIRST_LONG_POLL_S = 5;
const STREAM_SILENCE_MS = 45_000;
const USER_AGENT_HEADER = "X-Genline-Client";

export interface GenlineOptions {
  /** The tenant's API key (server side only). Leave it out in a browser: jobs are then read by their token URLs. */
  apiKey?: string | null;
  /** genline's base URL; defaults to the page's origin in a browser. */
  baseUrl?: string;
  /** Retries of one call on connect errors, 429 and 5xx (default 4). */
  maxRetries?: number;
  /** The longest Retry-After honoured before giving up with RateLimited (default 60 000 ms). */
  maxRetryAfterMs?: number;
  fetch?: Fetch;
}

export interface CreateOptions {
  /** Made for you when absent; the same key is sent on every retry of this call. */
  idempotencyKey?: string;
  /** Hold the answer until the job ends or this many seconds pass (at most 60). */
  waitS?: number;
  signal?: AbortSignal;
  /** POST to another route that answers with a job (your own server route), with the body as given. */
  endpoint?: string;
}

export interface WaitOptions {
  /** The client's own wait; ends with WaitTimeout (the job's server-side limits are its `budget`). */
  timeoutMs?: number;
  signal?: AbortSignal;
  onUpdate?: (event: JobEvent) => void;
  onProgress?: (fraction: number, message: string | null, event: JobEvent) => void;
  /** Cancel the job when `timeoutMs` runs out (default false for wait, true for run). */
  cancelOnTimeout?: boolean;
}

interface Target {
  jobId: string;
  self: string;
  events: string;
  cancel: string;
}

class StreamCut extends Error {}

function outcome(job: Job): Job {
  if (job.status === "failed") throw new JobFailed(job);
  if (job.status === "canceled") throw new JobCanceled(job);
  return job;
}

function newKey(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return `genline-js-${c.randomUUID()}`;
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  return `genline-js-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export class Genline {
  readonly baseUrl: string;
  readonly jobs: Jobs;
  readonly uploads: Uploads;
  readonly webhooks = { verify };
  /** @internal */ readonly policy: RetryPolicy;
  /** @internal */ readonly apiKey: string | null;

  constructor(options: GenlineOptions = {}) {
    const origin = (globalThis as { location?: { origin?: string } }).location?.origin;
    this.baseUrl = (options.baseUrl ?? origin ?? "http://127.0.0.1:8000").replace(/\/+$/, "");
    this.apiKey = options.apiKey || null;
    const chosen = options.fetch;
    this.policy = {
      maxRetries: options.maxRetries ?? 4,
      maxRetryAfterMs: options.maxRetryAfterMs ?? 60_000,
      // Called through a wrapper: browsers refuse a fetch invoked as a method of another object.
      fetch: (input, init) => (chosen ?? globalThis.fetch)(input, init),
    };
    this.jobs = new Jobs(this);
    this.uploads = new Uploads(this);
  }

  /** @internal */ headers(extra: Record<string, string> = {}): Record<string, string> {
    const out: Record<string, string> = { ...extra };
    if (this.apiKey) {
      out.Authorization = `Bearer ${this.apiKey}`;
      out[USER_AGENT_HEADER] = "js/0.1.0";
    }
    return out;
  }

  /** @internal */ url(path: string): string {
    return /^https?:\/\//.test(path) ? path : `${this.baseUrl}${path}`;
  }

  /** Create a job and wait for it: the completed job, or JobFailed / JobCanceled / WaitTimeout. */
  async run(body: JobCreate, options: CreateOptions & WaitOptions = {}): Promise<Job> {
    const { idempotencyKey, endpoint, signal } = options;
    const job = await this.jobs.create(body, { idempotencyKey, endpoint, signal });
    return this.jobs.wait(job, { ...options, cancelOnTimeout: options.cancelOnTimeout ?? true });
  }
}

/** `genline.uploads`: input images for edit and inpaint jobs (`POST /v1/uploads`). */
export class Uploads {
  constructor(private readonly c: Genline) {}

  /** Upload an image (a Blob or File, or bytes); resolves with its `upl_` id, media type and size. */
  async create(file: Blob | Uint8Array<ArrayBuffer>, options: { filename?: string; signal?: AbortSignal } = {}): Promise<Upload> {
    const form = new FormData();
    const blob = file instanceof Blob ? file : new Blob([file]);
    form.append("file", blob, options.filename ?? (file as File).name ?? "image");
    const response = await send(this.c.policy, "POST", this.c.url("/v1/uploads"),
      { form, headers: this.c.headers(), signal: options.signal });
    return (await response.json()) as Upload;
  }
}

export class Jobs {
  constructor(private readonly c: Genline) {}

  private target(ref: JobRef): Target {
    const jobId = typeof ref === "string" ? ref : ref.id;
    const urls = typeof ref === "string" ? null : ref.urls;
    const base = this.c.url(`/v1/jobs/${encodeURIComponent(jobId)}`);
    if (this.c.apiKey || !urls?.self) return { jobId, self: base, events: `${base}/events`, cancel: `${base}/cancel` };
    return { jobId, self: urls.self, events: urls.events ?? `${base}/events`, cancel: urls.cancel ?? `${base}/cancel` };
  }

  private async json<T>(method: string, url: string, options: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<T> {
    const response = await send(this.c.policy, method, url, { ...options, headers: this.c.headers(options.headers) });
    return (await response.json()) as T;
  }

  /** Submit a job. One idempotency key per call, sent on every retry: a retried call never makes a second job. */
  create(body: JobCreate, options: CreateOptions = {}): Promise<Job> {
    const headers: Record<string, string> = { "Idempotency-Key": options.idempotencyKey ?? newKey() };
    if (options.waitS) headers.Prefer = `wait=${Math.floor(options.waitS)}`;
    return this.json<Job>("POST", this.c.url(options.endpoint ?? "/v1/jobs"), { body, headers, signal: options.signal });
  }

  /** The job; with `waitS` (≤ 60) the server holds the answer until it ends or that time passes. */
  get(ref: JobRef, options: { waitS?: number; signal?: AbortSignal } = {}): Promise<Job> {
    const url = new URL(this.target(ref).self);
    if (options.waitS) url.searchParams.set("wait", String(Math.floor(options.waitS)));
    return this.json<Job>("GET", url.toString(), { signal: options.signal });
  }

  /** Jobs newest first: `for await (const job of jobs.list())`, or `.pages()` for each page. */
  list(query: ListQuery = {}, options: { signal?: AbortSignal } = {}): AsyncIterable<Job> & { pages(): AsyncGenerator<Page> } {
    const jobs = this;
    async function* pages(): AsyncGenerator<Page> {
      let cursor: string | null = null;
      do {
        const url = new URL(jobs.c.url("/v1/jobs"));
        for (const [name, value] of Object.entries(query)) {
          if (value !== undefined && value !== null) url.searchParams.set(name, Array.isArray(value) ? value.join(",") : String(value));
        }
        if (cursor) url.searchParams.set("cursor", cursor);
        const page: Page = await jobs.json<Page>("GET", url.toString(), { signal: options.signal });
        yield page;
        cursor = page.next_cursor;
      } while (cursor);
    }
    return {
      pages,
      async *[Symbol.asyncIterator]() {
        for await (const page of pages()) yield* page.data;
      },
    };
  }

  /** Cancel a queued or processing job (ApiError 409 `conflict` if it had already ended). */
  cancel(ref: JobRef, options: { signal?: AbortSignal } = {}): Promise<Job> {
    return this.json<Job>("POST", this.target(ref).cancel, options);
  }

  /** Resume a failed or canceled job from the step that did not finish (ApiError 409 otherwise). */
  retry(ref: JobRef, options: { signal?: AbortSignal } = {}): Promise<Job> {
    const id = typeof ref === "string" ? ref : ref.id;
    return this.json<Job>("POST", this.c.url(`/v1/jobs/${encodeURIComponent(id)}/retry`), options);
  }

  /** Cancel every active job matching all the filters given (at least one). */
  cancelMany(filter: { ids?: string[]; status?: ("queued" | "processing")[]; created_before?: string },
    options: { signal?: AbortSignal } = {}): Promise<{ canceled: number; data: Job[] }> {
    return this.json("POST", this.c.url("/v1/jobs/cancel"), { body: filter, signal: options.signal });
  }

  /** Every event after `lastEventId`, once each, in order, until the job ends; a broken stream is reopened. */
  async *stream(ref: JobRef, options: { lastEventId?: number; signal?: AbortSignal } = {}): AsyncGenerator<JobEvent> {
    let last = options.lastEventId ?? null;
    let failures = 0;
    for (;;) {
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
  async wait(ref: JobRef, options: WaitOptions = {}): Promise<Job> {
    const { timeoutMs, signal } = options;
    if (signal?.aborted) throw signal.reason;
    const inner = new AbortController();
    const onAbort = () => inner.abort(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    const timer = timeoutMs == null ? undefined : setTimeout(() => {
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
      throw new WaitTimeout(this.target(ref).jobId, timeoutMs!, canceled);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  private async follow(ref: JobRef, deadline: number | null, signal: AbortSignal, options: WaitOptions): Promise<Job> {
    let last: number | null = null;
    let cuts = 0;
    let idle = 0;
    for (;;) {
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
        if (deadline !== null) hold = Math.max(1, Math.min(hold, Math.floor((deadline - Date.now()) / 1000)));
        const current = await this.get(ref, { waitS: hold, signal });
        // The stream resumes next time round and replays what the cut hid; a stream that cannot
        // be had at all (a buffering proxy) is given up on once the job has ended.
        if (TERMINAL.has(current.status) && cuts >= 3) return current;
        continue;
      }
      cuts = 0;
      if (state.ended) {
        const current = await this.get(ref, { signal });
        if (TERMINAL.has(current.status)) return current;
      }
      // The stream ended early (the server's longest stream) or the job was retried: resume.
      if (++idle > 1) await sleep(Math.min(2000, backoffMs(idle)), signal);
    }
  }

  /** One connection to the event stream; `state.ended` once the job's stream is over (terminal event or 204). */
  private async *eventsOnce(ref: JobRef, last: number | null, state: { ended: boolean }, signal?: AbortSignal): AsyncGenerator<JobEvent> {
    const url = new URL(this.target(ref).events);
    // A query parameter rather than the Last-Event-ID header: no CORS preflight in browsers.
    if (last !== null) url.searchParams.set("last_event_id", String(last));
    const connection = new AbortController();
    const onAbort = () => connection.abort(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => connection.abort(new StreamCut("the event stream went silent")), STREAM_SILENCE_MS);
    };
    const cut = (err: unknown): never => {
      if (signal?.aborted) throw signal.reason;
      throw new StreamCut(String((err as Error)?.message ?? err));
    };
    try {
      arm();
      let response: Response;
      try {
        response = await this.c.policy.fetch(url.toString(), {
          headers: this.c.headers({ Accept: "text/event-stream" }),
          signal: connection.signal,
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
      let messages: AsyncGenerator<{ data: string }>;
      messages = readSse(response.body, arm);
      for (;;) {
        let next: IteratorResult<{ data: string }>;
        try {
          next = await messages.next();
        } catch (err) {
          return cut(err);
        }
        if (next.done) return;
        const event = JSON.parse(next.value.data) as JobEvent;
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
}
