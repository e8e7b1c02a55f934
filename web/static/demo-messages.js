// What the demo page tells a person when something goes wrong: a title and a sentence
// for each error code and rejected field, never a validator's or a provider's raw text.

const MAX_PROMPT = 4000;

// A job that ended without an image: by its error.code.
const JOB_FAILURES = {
  unsafe_content: ["Prompt refused", "The image provider refused this prompt under its content rules. Reword it and try again."],
  invalid_input: ["Invalid request", "The provider could not use this request. Check the prompt and the input image, then try again."],
  timeout: ["Timed out", "The image provider did not answer in time. It may be overloaded: try again, or pick a smaller size."],
  deadline_exceeded: ["Timed out", "The job ran out of time before it could finish (it waited or retried too long). Try again."],
  provider_error: ["Provider failure", "The image provider failed on every attempt. The problem is on its side: try again in a moment."],
  rate_limited: ["Provider busy", "The image provider is turning requests away for now (rate limited). Wait a minute and try again."],
  network_error: ["Provider unreachable", "genline could not reach the image provider. Try again in a moment."],
  storage_error: ["Storage failure", "The image was made but could not be saved. Try again."],
  internal_error: ["Server error", "Something went wrong inside genline; it has been logged. Try again."],
  lost: ["Job lost", "The worker running this job stopped and it could not be resumed. Try again."],
  canceled: ["Canceled", "The job was canceled before it finished. Change the prompt or try again."],
};

// A submission the server turned down: by the field it named.
function rejectedField(field, reason, body) {
  if (field === "prompt") {
    if (/at most|too long/i.test(reason)) {
      return ["Invalid prompt", `The prompt is too long: ${MAX_PROMPT.toLocaleString("en")} characters at most, and it has ${body.prompt.length.toLocaleString("en")}. Shorten it and try again.`];
    }
    return ["Invalid prompt", "Write a prompt first: describe the image you want, in a few words."];
  }
  if (field === "params.size" || field === "size") return ["Invalid size", "Pick one of the sizes in the list."];
  if (field.startsWith("inputs.mask") || field === "mask") {
    return ["Invalid image", "The inpaint mask could not be made from this image. Try a PNG or JPEG picture."];
  }
  if (field.startsWith("inputs") || field === "image") {
    if (/needs|at least one|missing/i.test(reason)) return ["No input image", "Edit and inpaint change a picture you give: choose an image file first."];
    return ["Invalid image", "That file is not an image genline can read, or it is too large. Use a PNG, JPEG or WebP picture."];
  }
  if (field.startsWith("params.simulate") || field.startsWith("simulate")) {
    return ["Simulation off", "This server does not allow simulated jobs. Choose “nothing” in Simulate."];
  }
  return ["Invalid request", "Part of the form could not be used. Check the prompt and the image, then try again."];
}

/** {title, text} for an error the submission got back (a GenlineError, or a network failure). */
export function submitMessage(err, body) {
  if (!err || err.status === undefined) {
    return { title: "Server unreachable", text: "The page could not reach the genline server. Check that it is running (make dev), then try again." };
  }
  const [field, reason] = Object.entries(err.fields || {})[0] || ["", ""];
  let pair;
  if (err.status === 422 && field) pair = rejectedField(field, String(reason), body);
  else if (err.status === 429) pair = ["Too many requests", "This page sends a few jobs a minute per address. Wait a minute and try again."];
  else if (err.status === 413) pair = ["Image too large", "The image is larger than this server accepts. Use a smaller picture."];
  else if (err.status === 503) pair = ["Server busy", "The server is starting or briefly unavailable. Try again in a few seconds."];
  else if (err.status === 404) pair = ["Demo off", "The demo is not enabled on this server (GENLINE_DEMO=1 turns it on)."];
  else if (err.status >= 500) pair = JOB_FAILURES.internal_error;
  else pair = ["Request refused", "The server did not accept this request. Reload the page and try again."];
  return { title: pair[0], text: pair[1], code: err.code };
}

/** {title, text} for a job that ended failed or canceled; ``byUser`` when this page canceled it. */
export function jobMessage(code, byUser) {
  if (code === "canceled" && byUser) return { title: "Canceled", text: "You canceled the job. Change the prompt or try again.", code };
  const [title, text] = JOB_FAILURES[code] || ["Failed", "The job failed. Try again in a moment."];
  return { title, text, code };
}
