// @genline/client: create, wait for, stream and cancel genline jobs; verify its webhooks.
// No runtime dependencies: fetch, ReadableStream and Web Crypto (Node 18+, edge runtimes, browsers).
export { Genline, Jobs, Uploads } from "./client.js";
export type { CreateOptions, GenlineOptions, WaitOptions } from "./client.js";
export {
  ApiError, ConnectionFailed, GenlineError, JobCanceled, JobEnded, JobFailed, RateLimited, WaitTimeout,
  WebhookVerificationError,
} from "./errors.js";
export { backoffMs, retryAfterMs } from "./http.js";
export { SseDecoder } from "./sse.js";
export { TERMINAL } from "./types.js";
export type {
  Budget, EventType, Job, JobCreate, JobErrorInfo, JobEvent, JobRef, JobStatus, JobUrls, ListQuery, Output, Page,
  Upload, WebhookMessage,
} from "./types.js";
export { verify as verifyWebhook } from "./webhooks.js";
export const VERSION = "0.1.0";
