// The JSON shapes of genline's API (DESIGN §2, §4).

export type JobStatus = "queued" | "processing" | "completed" | "failed" | "canceled";
export type EventType = "queued" | "started" | "progress" | "retry" | "completed" | "failed" | "canceled" | "estimation";

/** The job's server-side budget: per-attempt timeout, whole-job deadline, attempts. */
export interface Budget {
  timeout_s?: number | null;
  deadline_s?: number | null;
  max_attempts?: number | null;
}

export interface JobErrorInfo {
  code: string;
  message: string | null;
  retryable: boolean | null;
  step: string | null;
}

export interface Output {
  url: string;
  media_type: string | null;
  bytes: number | null;
  width: number | null;
  height: number | null;
  sha256: string | null;
}

/** `self` and `events` carry a job-scoped read token: hand them to a browser, never the API key. */
export interface JobUrls {
  self: string;
  events: string;
  cancel: string;
}

export interface Job {
  id: string;
  status: JobStatus;
  operation: "generate" | "edit" | "inpaint";
  provider: string | null;
  model: string | null;
  prompt: string | null;
  prompt_sha256: string | null;
  params: Record<string, unknown>;
  inputs: { images: string[]; mask: string | null } | null;
  budget: Budget;
  priority: string | null;
  step: string | null;
  attempt: number | null;
  progress: number | null;
  queue_position: number | null;
  error: JobErrorInfo | null;
  outputs: Output[] | null;
  metadata: Record<string, unknown>;
  webhook: { url: string; events: string[] } | null;
  created_at: string | null;
  started_at: string | null;
  completed_at: string | null;
  deadline_at: string | null;
  estimated_start_at?: string | null;
  estimated_finish_at?: string | null;
  timing: { queued_s: number | null; generate_s: number | null; upload_s: number | null; total_s: number | null };
  urls: JobUrls;
}

/** One event of a job's log; `id` is its sequence number (the SSE id). */
export interface JobEvent {
  id: number;
  job_id: string;
  type: EventType;
  data: Record<string, any>;
  created_at: string;
}

/** The body of POST /v1/jobs. */
export interface JobCreate {
  prompt: string;
  operation?: "generate" | "edit" | "inpaint";
  provider?: string | string[];
  model?: string;
  params?: { size?: string; n?: number; seed?: number; format?: "png" | "jpeg" | "webp"; [key: string]: unknown };
  inputs?: { images?: string[]; mask?: string };
  budget?: Budget;
  priority?: "high" | "normal" | "low";
  metadata?: Record<string, unknown>;
  webhook?: { url: string; events?: EventType[] };
}

/** A job id (read with the API key), or a job (or anything with its `id` and token `urls`). */
export type JobRef = string | { id: string; urls?: Partial<JobUrls> | null };

/** An uploaded input image: pass `id` in `inputs.images` or `inputs.mask` of an edit or inpaint job. */
export interface Upload {
  id: string;
  media_type: string;
  width: number;
  height: number;
  bytes: number;
}

export interface Page {
  data: Job[];
  next_cursor: string | null;
}

export interface ListQuery {
  status?: JobStatus | JobStatus[];
  operation?: "generate" | "edit" | "inpaint";
  created_after?: string;
  created_before?: string;
  limit?: number;
}

/** A verified webhook: `type` is `job.<event>`. */
export interface WebhookMessage {
  id: string;
  type: string;
  timestamp: string;
  data: { event: JobEvent; job: Job };
}

export const TERMINAL: ReadonlySet<string> = new Set(["completed", "failed", "canceled"]);
