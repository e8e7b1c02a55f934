// Pure parts of the client, and the demo's copy of the bundle being a fresh build of the package.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { backoffMs, retryAfterMs, SseDecoder, verifyWebhook, WebhookVerificationError } from "../dist/index.js";
import { bundle } from "../scripts/bundle.mjs";

const SECRET = "whsec_" + Buffer.from("a test secret of thirty-two bytes").toString("base64");

function signed(body, { id = "msg_1", at = Math.floor(Date.now() / 1000), secret = SECRET } = {}) {
  const key = Buffer.from(secret.slice(6), "base64");
  const sig = createHmac("sha256", key).update(`${id}.${at}.${body}`).digest("base64");
  return { "webhook-id": id, "webhook-timestamp": String(at), "webhook-signature": `v1,${sig}` };
}

test("backoff doubles up to its cap, with jitter in the upper half", () => {
  assert.equal(backoffMs(0, 500, 8000, () => 0), 250);
  assert.equal(backoffMs(0, 500, 8000, () => 1), 500);
  assert.equal(backoffMs(3, 500, 8000, () => 1), 4000);
  assert.equal(backoffMs(10, 500, 8000, () => 1), 8000);
});

test("Retry-After is read as seconds or as an HTTP date", () => {
  assert.equal(retryAfterMs("2"), 2000);
  assert.equal(retryAfterMs(null), null);
  assert.equal(retryAfterMs("soon"), null);
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(retryAfterMs("Thu, 01 Jan 2026 00:00:05 GMT", now), 5000);
});

test("the SSE decoder follows the WHATWG rules", () => {
  const d = new SseDecoder();
  const lines = ["retry: 2000", "", ": heartbeat", "", "id: 3", "event: progress", "data: {\"a\":", "data:1}", ""];
  const out = lines.map((l) => d.feed(l)).filter(Boolean);
  assert.deepEqual(out, [{ id: "3", event: "progress", data: "{\"a\":\n1}" }]);
});

test("a webhook verifies, and a changed body, other secret or old timestamp does not", async () => {
  const body = JSON.stringify({ type: "job.completed", timestamp: "t", data: { event: { id: 1 }, job: { id: "job_x" } } });
  const message = await verifyWebhook(body, signed(body), SECRET);
  assert.equal(message.type, "job.completed");
  assert.equal(message.id, "msg_1");
  const headers = new Headers(signed(body));
  assert.equal((await verifyWebhook(new TextEncoder().encode(body), headers, SECRET)).data.job.id, "job_x");
  await assert.rejects(verifyWebhook(body.replace("completed", "failed"), signed(body), SECRET), WebhookVerificationError);
  await assert.rejects(verifyWebhook(body, signed(body), "whsec_" + Buffer.from("other").toString("base64")), WebhookVerificationError);
  await assert.rejects(verifyWebhook(body, signed(body, { at: 1000 }), SECRET), /from now/);
  await assert.rejects(verifyWebhook(body, {}, SECRET), /missing/);
});

test("web/static/genline-client.js is a fresh build of this package", async () => {
  const out = join(mkdtempSync(join(tmpdir(), "genline-bundle-")), "genline-client.js");
  await bundle(out);
  const committed = readFileSync(fileURLToPath(new URL("../../../web/static/genline-client.js", import.meta.url)), "utf8");
  assert.equal(committed, readFileSync(out, "utf8"), "run `npm run build:web` in clients/js and commit the result");
});

test("npm pack gives an installable package with types and the browser bundle, no sources", async () => {
  const { execFileSync } = await import("node:child_process");
  const root = fileURLToPath(new URL("..", import.meta.url));
  const work = mkdtempSync(join(tmpdir(), "genline-pack-"));
  const [packed] = JSON.parse(execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", work], { cwd: root }));
  const files = packed.files.map((f) => f.path);
  for (const f of ["dist/index.js", "dist/index.d.ts", "dist/client.d.ts", "dist/genline-client.js", "README.md", "package.json"]) {
    assert.ok(files.includes(f), `${f} missing from ${files}`);
  }
  assert.ok(!files.some((f) => f.startsWith("src/") || f.startsWith("test/")));
  // Installed into an empty project (no registry needed: it has no dependencies), it imports.
  const app = join(work, "app");
  execFileSync("mkdir", ["-p", app]);
  execFileSync("npm", ["init", "-y"], { cwd: app, stdio: "ignore" });
  execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", join(work, packed.filename)], { cwd: app, stdio: "ignore" });
  const out = execFileSync("node", ["--input-type=module", "-e",
    "import { Genline, VERSION } from '@genline/client'; console.log(typeof Genline, VERSION)"], { cwd: app }).toString();
  assert.equal(out.trim(), "function 0.1.0");
});
