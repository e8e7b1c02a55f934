// One HTTP call with retries: connect errors, 429 and 5xx, with backoff and Retry-After; never other 4xx.
import { ApiError, ConnectionFailed, RateLimited } from "./errors.js";

export const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);
const CONNECT_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "UND_ERR_CONNECT_TIMEOUT"]);

export type Fetch = typeof globalThis.fetch;

/** Delay before retry `attempt` (0-based): base * 2^attempt, capped, jittered over the upper half. */
export function backoffMs(attempt: number, baseMs = 500, capMs = 8000, rng: () => number = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** attempt);
  return ceiling / 2 + (ceiling / 2) * rng();
}

/** `Retry-After` in milliseconds: seconds or an HTTP date; null when absent or unreadable. */
export function retryAfterMs(value: string | null, now: number = Date.now()): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const when = Date.parse(trimmed);
  return Number.isNaN(when) ? null : Math.max(0, when - now);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The typed error of a non-2xx answer, from genline's `{"error": {...}}` when present. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let body: any = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's error page): keep the status
  }
  const error = body && typeof body.error === "object" && body.error ? body.error : {};
  const status = response.status;
  const code = error.code || (status === 429 ? "rate_limited" : "http_error");
  const message = error.message || `genline answered HTTP ${status}`;
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  if (status === 429) {
    return new RateLimited(status, code, message, error.fields, headers, retryAfterMs(response.headers.get("retry-after")));
  }
  return new ApiError(status, code, message, error.fields, headers);
}

/** True for a fetch rejection that happened before the request reached the server. */
function beforeSending(err: unknown): boolean {
  const cause = (err as { cause?: { code?: string } })?.cause;
  return Boolean(cause && cause.code && CONNECT_CODES.has(cause.code));
}

export interface RetryPolicy {
  maxRetries: number;
  maxRetryAfterMs: number;
  fetch: Fetch;
}

export interface RequestOptions {
  body?: unknown;
  /** A multipart body, sent as is (fetch sets its Content-Type with the boundary). */
  form?: FormData;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/**
 * Send one request, retrying as the policy says. A network error after the
 * request may have reached the server is retried only when that is safe: a GET,
 * or a POST with an Idempotency-Key.
 */
export async function send(policy: RetryPolicy, method: string, url: string, options: RequestOptions = {}): Promise<Response> {
  const headers = { ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const safe = method === "GET" || "Idempotency-Key" in headers;
  const init: RequestInit = { method, headers, signal: options.signal };
  if (options.body !== undefined) init.body = JSON.stringify(options.body);
  else if (options.form) init.body = options.form;
  for (let attempt = 0; ; attempt++) {
    const last = attempt >= policy.maxRetries;
    let response: Response;
    try {
      response = await policy.fetch(url, init);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (last || !(safe || beforeSending(err))) {
        throw new ConnectionFailed(`${method} ${url}: ${(err as Error)?.message ?? err}`, { cause: err });
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
