// The demo page: a form over genline-client.js. Prompts are only ever set as text, never as HTML.
import { ApiError, Genline, GenlineError, JobEnded } from "./genline-client.js";
import { jobMessage, submitMessage } from "./demo-messages.js";

const $ = (id) => document.getElementById(id);
const form = $("job-form");
// No API key: the page submits through the demo route and reads its job by the job's token URLs;
// a rate-limited submission is shown at once rather than retried after Retry-After.
const genline = new Genline({ maxRetryAfterMs: 0 });

const SIMULATIONS = {
  slow: { simulate: { latency_s: 5 } },
  provider_error: { simulate: { latency_s: 1, fail_attempts: 10, fail_code: "provider_error" }, budget: { max_attempts: 2 } },
  timeout: { simulate: { latency_s: 30 }, budget: { timeout_s: 2, max_attempts: 1 } },
  unsafe_content: { simulate: { latency_s: 1, fail_attempts: 1, fail_code: "unsafe_content" } },
  rate_limited: { simulate: { latency_s: 0.5, fail_attempts: 10, fail_code: "rate_limited" }, budget: { max_attempts: 2 } },
  hang: { simulate: { hang: true }, budget: { timeout_s: 2, max_attempts: 1 } },
};

const QUEUE_POLL_MS = 2000;

let current = null; // {job, controller, canceledHere}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function centreMask(dataUri) {
  // Opaque everywhere except a transparent centre: the region the inpaint repaints.
  const img = new Image();
  img.src = dataUri;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.clearRect(canvas.width / 4, canvas.height / 4, canvas.width / 2, canvas.height / 2);
  return canvas.toDataURL("image/png");
}

async function requestBody() {
  const body = { prompt: $("prompt").value, operation: $("operation").value, size: $("size").value };
  const simulation = $("simulate") && SIMULATIONS[$("simulate").value];
  Object.assign(body, simulation || {});
  if (body.operation !== "generate") {
    const file = $("image").files[0];
    if (!file) {
      throw new ApiError(422, "invalid_input", `${body.operation} needs an input image`,
                         { "inputs.images": "needs at least one input image" });
    }
    body.image = await readFile(file);
    if (body.operation === "inpaint") body.mask = await centreMask(body.image);
  }
  return body;
}

function setBusy(busy) {
  for (const el of form.elements) el.disabled = busy;
  $("cancel").hidden = !busy;
  $("cancel").disabled = false;
}

function showSkeleton(size) {
  const [w, h] = size.split("x").map(Number);
  const frame = $("frame");
  frame.style.aspectRatio = `${w} / ${h}`;
  frame.style.maxWidth = `${Math.min(w, 512)}px`;
  frame.classList.add("skeleton");
  frame.hidden = false;
  $("bar").hidden = false;
  $("output").hidden = true;
  $("download").hidden = true;
  $("error").hidden = true;
  $("provider").hidden = true;
  $("queue").hidden = true;
  $("placeholder").hidden = true;
  $("status").hidden = false;
  $("job").hidden = false;
  setProgress(0, "submitting…");
}

// Every terminal state clears the skeleton, the progress bar and the queue line.
function settle() {
  $("frame").classList.remove("skeleton");
  $("bar").hidden = true;
  $("bar-fill").style.width = "0%";
  $("queue").hidden = true;
}

function seconds(iso) {
  return Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000));
}

// While queued: the position, and the estimated start and end when the job carries them.
function showQueue(job) {
  const line = $("queue");
  if (!job || job.status !== "queued" || job.queue_position == null) {
    line.hidden = true;
    return;
  }
  const ahead = job.queue_position - 1;
  let text = ahead <= 0 ? "Next in the queue" : `In the queue: ${ahead} job${ahead === 1 ? "" : "s"} ahead`;
  if (job.estimated_start_at) text += `; starts in about ${seconds(job.estimated_start_at)} s`;
  if (job.estimated_finish_at) text += `, done in about ${seconds(job.estimated_finish_at)} s`;
  line.textContent = `${text}.`;
  line.hidden = false;
}

async function watchQueue(job, controller) {
  // The event stream says when the job starts; the position in between comes from the job itself.
  let latest = job;
  while (latest && latest.status === "queued" && !controller.signal.aborted && current && current.controller === controller) {
    showQueue(latest);
    await new Promise((resolve) => setTimeout(resolve, QUEUE_POLL_MS));
    if (controller.signal.aborted || !current.queued) break;
    latest = await genline.jobs.get(job, { signal: controller.signal }).catch(() => null);
  }
  if (current && current.controller === controller) $("queue").hidden = true;
}

function showProvider(job) {
  const line = $("provider");
  const who = job.provider || "local";
  const model = job.model ? ` (model ${job.model})` : "";
  if (who === "local") {
    line.textContent = "Drawn by the local provider: a placeholder that paints a gradient and shapes picked from the prompt, "
      + "not what it describes. Configure OpenAI, your own inference endpoint or the in-worker diffusers model for real images (README, Quick start).";
    line.classList.add("placeholder-note");
  } else {
    line.textContent = `Drawn by the ${who} provider${model}.`;
    line.classList.remove("placeholder-note");
  }
  line.hidden = false;
}

function setProgress(fraction, text) {
  $("bar-fill").style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
  $("status").textContent = text;
}

function showError({ title, text, code }) {
  settle();
  $("frame").hidden = true;
  $("status").hidden = true;
  // A rejected submission made no job: show only the message.
  $("job").hidden = !(current && current.job);
  $("error-kind").textContent = title;
  $("error-message").textContent = text;
  $("error-code").textContent = code ? `error code: ${code}` : "";
  $("error").hidden = false;
}

function describe(event) {
  const d = event.data || {};
  switch (event.type) {
    case "queued": return "queued";
    case "started": return `running ${d.step}${d.step === "generate" ? ` (attempt ${d.attempt})` : ""}`;
    case "progress": return d.message || "working";
    case "retry": return `attempt ${d.attempt} failed (${d.error && d.error.code}); retrying in ${d.delay_s} s`;
    default: return event.type;
  }
}

async function showResult(job) {
  const output = job.outputs[0];
  const img = $("output");
  img.src = output.url;
  await img.decode().catch(() => {});
  img.hidden = false;
  settle();
  showProvider(job);
  const link = $("download");
  link.href = output.url;
  link.download = `${job.id}.${output.media_type.split("/")[1]}`;
  link.hidden = false;
  $("status").textContent = `completed in ${job.timing.total_s ?? "?"} s`;
}

async function run() {
  if (current) current.controller.abort();
  const controller = new AbortController();
  current = { job: null, controller, canceledHere: false, queued: true };
  setBusy(true);
  showSkeleton($("size").value);
  $("prompt-echo").textContent = $("prompt").value;
  let body = null;
  try {
    body = await requestBody();
    const job = await genline.jobs.create(body, { endpoint: "/demo/jobs", signal: controller.signal });
    current.job = job;
    watchQueue(job, controller);
    let final;
    try {
      final = await genline.jobs.wait(job, {
        signal: controller.signal,
        onUpdate: (event) => {
          if (event.type !== "queued") current.queued = false;
          if (!current.queued) $("queue").hidden = true;
          const shown = (parseFloat($("bar-fill").style.width) || 0) / 100;
          setProgress(event.type === "progress" ? event.data.fraction : shown, describe(event));
        },
      });
    } catch (err) {
      if (!(err instanceof JobEnded)) throw err;
      // Failed or canceled: a sentence for its error code, never the raw text.
      current.queued = false;
      showError(jobMessage(err.job.error ? err.job.error.code : err.job.status, current.canceledHere));
      return;
    }
    current.queued = false;
    await showResult(final);
  } catch (err) {
    if (controller.signal.aborted) return;
    showError(submitMessage(err instanceof GenlineError ? err : null, body || { prompt: $("prompt").value }));
  } finally {
    if (current && current.controller === controller) setBusy(false);
  }
}

async function cancelCurrent() {
  if (!current || !current.job || $("cancel").hidden || $("cancel").disabled) return;
  $("cancel").disabled = true;
  current.canceledHere = true;
  try {
    await genline.jobs.cancel(current.job);
  } catch (err) {
    // 409: it ended first; the stream tells how.
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  run();
});
$("retry").addEventListener("click", () => run());
$("cancel").addEventListener("click", cancelCurrent);
// Enter in the prompt generates (Shift+Enter is a new line); Escape cancels the running job.
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    form.requestSubmit();
  }
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") cancelCurrent();
});
$("operation").addEventListener("change", () => {
  $("image-field").hidden = $("operation").value === "generate";
});
