// The demo page: a form over genline-client.js. Prompts are only ever set as text, never as HTML.
import { Genline, GenlineError } from "./genline-client.js";

const $ = (id) => document.getElementById(id);
const form = $("job-form");
// No API key: the page submits through the demo route and reads its job by the job's token URLs;
// a rate-limited submission is shown at once rather than retried after Retry-After.
const genline = new Genline({ maxRetryAfterMs: 0 });

const SIMULATIONS = {
  slow: { simulate: { latency_s: 5 } },
  provider_error: { simulate: { latency_s: 1, fail_attempts: 10, fail_code: "provider_error" }, budget: { max_attempts: 2 } },
  timeout: { simulate: { latency_s: 30 }, budget: { timeout_s: 2, max_attempts: 1 } },
};

// What kind of failure it was, by error code, in words a user understands.
const KINDS = {
  invalid_input: "Invalid prompt",
  unsafe_content: "Invalid prompt: the provider refused it",
  timeout: "Timed out",
  deadline_exceeded: "Timed out",
  provider_error: "Provider failure",
  rate_limited: "Provider failure: it is rate limiting us",
  network_error: "Provider failure: it could not be reached",
  storage_error: "Storage failure",
  canceled: "Canceled",
  internal_error: "Server error",
  rate_limited_demo: "Too many requests",
};

let current = null; // {job, controller}

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
    if (!file) throw new GenlineError(422, { code: "invalid_input", message: `${body.operation} needs an input image` });
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
  $("output").hidden = true;
  $("download").hidden = true;
  $("error").hidden = true;
  $("placeholder").hidden = true;
  $("job").hidden = false;
  setProgress(0, "submitting…");
}

function setProgress(fraction, text) {
  $("bar-fill").style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
  $("status").textContent = text;
}

function showError(code, message) {
  $("error-kind").textContent = KINDS[code] || "Failed";
  $("error-message").textContent = message;
  $("error").hidden = false;
  $("frame").classList.remove("skeleton");
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
  $("frame").classList.remove("skeleton");
  const link = $("download");
  link.href = output.url;
  link.download = `${job.id}.${output.media_type.split("/")[1]}`;
  link.hidden = false;
  setProgress(1, `completed in ${job.timing.total_s ?? "?"} s`);
}

async function run() {
  if (current) current.controller.abort();
  const controller = new AbortController();
  current = { job: null, controller };
  setBusy(true);
  showSkeleton($("size").value);
  $("prompt-echo").textContent = $("prompt").value;
  try {
    const job = await genline.jobs.create(await requestBody(), { endpoint: "/demo/jobs", signal: controller.signal });
    current.job = job;
    const final = await genline.jobs.wait(job, {
      signal: controller.signal,
      onUpdate: (event) => {
        const shown = (parseFloat($("bar-fill").style.width) || 0) / 100;
        setProgress(event.type === "progress" ? event.data.fraction : shown, describe(event));
      },
    });
    await showResult(final);
  } catch (err) {
    if (controller.signal.aborted) return;
    if (err instanceof GenlineError) {
      const code = err.status === 429 ? "rate_limited_demo" : err.code;
      showError(code, err.message);
    } else {
      showError("internal_error", String(err.message || err));
    }
    setProgress(0, "");
  } finally {
    if (current && current.controller === controller) setBusy(false);
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  run();
});
$("retry").addEventListener("click", () => run());
$("cancel").addEventListener("click", async () => {
  if (!current || !current.job) return;
  $("cancel").disabled = true;
  try {
    await genline.jobs.cancel(current.job);
  } catch (err) {
    // 409: it ended first; the stream tells how.
  }
});
$("operation").addEventListener("change", () => {
  $("image-field").hidden = $("operation").value === "generate";
});
