// The client's errors: one root, one class per way a call can end badly.
import type { Job } from "./types.js";

/** Root of every error this client throws. `code` is genline's error code; `status` the HTTP status (0 if none). */
export class GenlineError extends Error {
  code: string;
  status: number;
  constructor(message: string, code = "error", status = 0) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
  }
}

/** genline answered with its error shape (or a non-2xx status). */
export class ApiError extends GenlineError {
  fields: Record<string, unknown>;
  headers: Record<string, string>;
  constructor(status: number, code: string, message: string, fields?: Record<string, unknown>, headers?: Record<string, string>) {
    super(message, code, status);
    this.fields = fields ?? {};
    this.headers = headers ?? {};
  }
}

/** 429 after every retry; `retryAfterMs` says when to try again, with the same `idempotencyKey`. */
export class RateLimited extends ApiError {
  retryAfterMs: number | null;
  idempotencyKey: string | null = null;
  constructor(status: number, code: string, message: string, fields?: Record<string, unknown>,
    headers?: Record<string, string>, retryAfterMs: number | null = null) {
    super(status, code, message, fields, headers);
    this.retryAfterMs = retryAfterMs;
  }
}

/** genline could not be reached (after every retry). */
export class ConnectionFailed extends GenlineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, "connection_failed", 0);
    if (options && "cause" in options) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** A waited-for job ended without completing; `job` is its final state, `code` its error code. */
export class JobEnded extends GenlineError {
  job: Job;
  jobId: string;
  constructor(job: Job) {
    const code = job.error?.code ?? job.status;
    super(job.error?.message || `job ${job.id} ${job.status}`, code, 0);
    this.job = job;
    this.jobId = job.id;
  }
}

/** The job failed; `code` is its error code (`timeout`, `provider_error`, ...). */
export class JobFailed extends JobEnded {}

/** The job was canceled before it completed. */
export class JobCanceled extends JobEnded {}

/** The client's own wait ran out; the job goes on unless `canceled`. */
export class WaitTimeout extends GenlineError {
  jobId: string;
  timeoutMs: number;
  canceled: boolean;
  constructor(jobId: string, timeoutMs: number, canceled: boolean) {
    const rest = canceled ? "; the job was canceled" : "; the job goes on";
    super(`job ${jobId} did not end within the client's ${timeoutMs} ms wait${rest}`, "wait_timeout", 0);
    this.jobId = jobId;
    this.timeoutMs = timeoutMs;
    this.canceled = canceled;
  }
}

/** A webhook's signature, timestamp or headers did not verify: do not trust its body. */
export class WebhookVerificationError extends GenlineError {
  constructor(message: string) {
    super(message, "webhook_verification_failed", 0);
  }
}
