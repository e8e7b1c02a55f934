// @genline/client against a live genline (GENLINE_URL, GENLINE_API_KEY...; started by
// tests/test_client_js.py). Proxies on 127.0.0.1 cut streams for real and answer 429.
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, test } from "node:test";

import {
  ApiError, Genline, GenlineError, JobCanceled, JobFailed, RateLimited, verifyWebhook, WaitTimeout,
} from "../dist/index.js";

const URL_ = process.env.GENLINE_URL;
const KEY = process.env.GENLINE_API_KEY;
const skip = !URL_ || !KEY ? "no live genline (GENLINE_URL, GENLINE_API_KEY): run through tests/test_client_js.py" : false;
const SMALL = { size: "32x32" };
const slow = (latency_s = 3) => ({ size: "32x32", simulate: { latency_s } });
const closers = [];
after(() => Promise.all(closers.map((close) => close())));

const client = (options = {}) => new Genline({ apiKey: KEY, baseUrl: URL_, ...options });

function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

/** Forwards bytes to genline; cut() destroys every open connection, as a dropped network would. */
async function tcpProxy() {
  const upstreamPort = Number(new URL(URL_).port);
  const sockets = new Set();
  const heads = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    client.on("data", (data) => {
      const text = data.toString("latin1");
      if (/^(GET|POST) /.test(text)) heads.push(text.split("\r\n\r\n")[0]);
      upstream.write(data);
    });
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) s.on("close", end).on("error", end);
  });
  const port = await listen(server);
  closers.push(() => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(r); }));
  return {
    url: `http://127.0.0.1:${port}`,
    heads,
    cut() {
      const n = sockets.size;
      for (const s of sockets) s.destroy();
      return n;
    },
  };
}

/** An HTTP proxy: each request takes the next scripted step ({status, headers, forward}), then plain forwarding. */
async function scriptedProxy(script = []) {
  const seen = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const headers = { ...req.headers };
    delete headers.host;
    delete headers["content-length"];
    const record = { method: req.method, path: req.url, headers, body: body.toString() };
    seen.push(record);
    const step = script.shift();
    let upstream = null;
    if (!step || step.forward) {
      upstream = await fetch(URL_ + req.url, { method: req.method, headers, body: body.length ? body : undefined });
      record.upstream = { status: upstream.status, body: await upstream.text() };
    }
    if (!step) {
      res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") || "application/json" });
      return res.end(record.upstream.body);
    }
    res.writeHead(step.status, { "content-type": "application/json", ...(step.headers || {}) });
    res.end(JSON.stringify({ error: { code: "rate_limited", message: "scripted by the test proxy", fields: {} } }));
  });
  const port = await listen(server);
  closers.push(() => new Promise((r) => server.close(r)));
  return { url: `http://127.0.0.1:${port}`, seen };
}

const ids = (events) => events.map((e) => e.id);
const range = (n) => Array.from({ length: n }, (_, i) => i + 1);

test("run completes and onUpdate sees every event once, in order", { skip }, async () => {
  const events = [];
  const fractions = [];
  const job = await client().run({ prompt: "a lighthouse", params: { ...slow(1), seed: 7 } },
    { timeoutMs: 60_000, onUpdate: (e) => events.push(e), onProgress: (f) => fractions.push(f) });
  assert.equal(job.status, "completed");
  assert.equal(job.outputs[0].width, 32);
  assert.deepEqual(ids(events), range(events.length));
  assert.equal(events.at(-1).type, "completed");
  assert.ok(fractions.length >= 1 && fractions.every((f) => f >= 0 && f <= 1));
});

test("a failed job rejects with JobFailed and its error code", { skip }, async () => {
  const err = await client().run({ prompt: "fails", params: { ...SMALL, simulate: { fail_attempts: 5 } }, budget: { max_attempts: 1 } },
    { timeoutMs: 60_000 }).catch((e) => e);
  assert.ok(err instanceof JobFailed && err instanceof GenlineError);
  assert.equal(err.code, "provider_error");
  assert.equal(err.job.status, "failed");
});

test("a job canceled while waited for rejects with JobCanceled; retry resumes it", { skip }, async () => {
  const genline = client();
  const job = await genline.jobs.create({ prompt: "slow", params: slow() });
  let canceled = false;
  const err = await genline.jobs.wait(job.id, {
    timeoutMs: 60_000,
    onUpdate: (e) => {
      if (e.type === "progress" && !canceled) {
        canceled = true;
        genline.jobs.cancel(job.id);
      }
    },
  }).catch((e) => e);
  assert.ok(err instanceof JobCanceled, String(err));
  assert.equal(err.code, "canceled");
  const conflict = await genline.jobs.cancel(job.id).catch((e) => e);
  assert.ok(conflict instanceof ApiError && conflict.status === 409 && conflict.code === "conflict");
  assert.equal((await genline.jobs.retry(job.id)).status, "queued");
  assert.equal((await genline.jobs.wait(job.id, { timeoutMs: 60_000 })).status, "completed");
});

test("the client's wait times out on time, and cancels only when asked", { skip }, async () => {
  const genline = client();
  const job = await genline.jobs.create({ prompt: "slow", params: slow() });
  const started = Date.now();
  const err = await genline.jobs.wait(job, { timeoutMs: 1000 }).catch((e) => e);
  const elapsed = Date.now() - started;
  assert.ok(err instanceof WaitTimeout, String(err));
  assert.equal(err.jobId, job.id);
  assert.equal(err.canceled, false);
  assert.ok(elapsed >= 990 && elapsed < 2000, `${elapsed} ms`);
  assert.ok(["queued", "processing"].includes((await genline.jobs.get(job.id)).status));

  const ran = await genline.run({ prompt: "slow too", params: slow() }, { timeoutMs: 1000 }).catch((e) => e);
  assert.ok(ran instanceof WaitTimeout && ran.canceled);
  assert.equal((await genline.jobs.get(ran.jobId)).status, "canceled");
});

test("an AbortSignal stops the wait at once and leaves the job running", { skip }, async () => {
  const genline = client();
  const job = await genline.jobs.create({ prompt: "slow", params: slow() });
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 300);
  const started = Date.now();
  const err = await genline.jobs.wait(job, { signal: controller.signal }).catch((e) => e);
  assert.equal(err.name, "AbortError");
  assert.ok(Date.now() - started < 1500);
  assert.ok(["queued", "processing"].includes((await genline.jobs.get(job.id)).status));
});

test("a stream cut mid-way resumes with nothing missed or doubled", { skip }, async () => {
  const proxy = await tcpProxy();
  const genline = client({ baseUrl: proxy.url });
  const job = await genline.jobs.create({ prompt: "cut me", params: slow(4) });
  const events = [];
  let cut = 0;
  const final = await genline.jobs.wait(job, {
    timeoutMs: 60_000,
    onUpdate: (e) => {
      events.push(e);
      if (e.type === "progress" && !cut) cut = proxy.cut();
    },
  });
  assert.equal(final.status, "completed");
  assert.ok(cut >= 1);
  const log = [];
  for await (const e of client().jobs.stream(job.id)) log.push(e);
  assert.deepEqual(ids(events), ids(log));
  assert.deepEqual(ids(events), range(log.length));
  assert.ok(proxy.heads.some((h) => /wait=/.test(h.split("\r\n")[0])), proxy.heads.join("\n--\n"));
  assert.ok(proxy.heads.some((h) => /last_event_id=/.test(h.split("\r\n")[0])), proxy.heads.join("\n--\n"));
});

test("jobs.stream reopens a cut stream from the last event", { skip }, async () => {
  const proxy = await tcpProxy();
  const job = await client().jobs.create({ prompt: "stream me", params: slow(3) });
  const seen = [];
  for await (const e of client({ baseUrl: proxy.url }).jobs.stream(job.id)) {
    seen.push(e);
    if (seen.length === 2) proxy.cut();
  }
  assert.deepEqual(ids(seen), range(seen.length));
  assert.equal(seen.at(-1).type, "completed");
  // Resumed from the second event or later (events already buffered are still delivered)
  const resumed = proxy.heads.map((h) => /last_event_id=(\d+)/.exec(h.split("\r\n")[0])).filter(Boolean);
  assert.ok(resumed.length && Number(resumed[0][1]) >= 2, proxy.heads.join("\n--\n"));
});

test("a 429 is retried after Retry-After with the same idempotency key: one job", { skip }, async () => {
  const key = process.env.GENLINE_API_KEY_IDEM;
  const proxy = await scriptedProxy([{ status: 429, headers: { "retry-after": "1" }, forward: true }]);
  const started = Date.now();
  const job = await new Genline({ apiKey: key, baseUrl: proxy.url }).jobs.create({ prompt: "once only", params: SMALL });
  assert.ok(Date.now() - started >= 1000);
  const posts = proxy.seen.filter((r) => r.method === "POST");
  assert.equal(posts.length, 2);
  assert.equal(posts[0].headers["idempotency-key"], posts[1].headers["idempotency-key"]);
  assert.match(posts[0].headers["idempotency-key"], /^genline-js-/);
  assert.equal(JSON.parse(posts[0].upstream.body).id, job.id);
  const listed = [];
  for await (const j of new Genline({ apiKey: key, baseUrl: URL_ }).jobs.list()) listed.push(j.id);
  assert.deepEqual(listed, [job.id]);
});

test("4xx is never retried; RateLimited after every retry is typed", { skip }, async () => {
  const proxy = await scriptedProxy();
  const err = await client({ baseUrl: proxy.url }).jobs.create({ prompt: "bad", params: { size: "huge" } }).catch((e) => e);
  assert.ok(err instanceof ApiError && err.status === 422 && err.code === "invalid_input");
  assert.ok("params.size" in err.fields);
  assert.equal(proxy.seen.length, 1);

  const limited = await scriptedProxy(Array(3).fill({ status: 429, headers: { "retry-after": "0" } }));
  const err2 = await client({ baseUrl: limited.url, maxRetries: 2 }).jobs.create({ prompt: "never" }).catch((e) => e);
  assert.ok(err2 instanceof RateLimited && err2.retryAfterMs === 0);
  assert.equal(limited.seen.length, 3);
  assert.equal(err2.idempotencyKey, limited.seen[0].headers["idempotency-key"]);
});

test("a browser holding only the job's token URLs can wait and stream, not read by id", { skip }, async () => {
  const job = await client().jobs.create({ prompt: "token only", params: SMALL });
  const browser = new Genline({ baseUrl: URL_ });
  const handed = { id: job.id, urls: { self: job.urls.self, events: job.urls.events } };
  assert.equal((await browser.jobs.wait(handed, { timeoutMs: 60_000 })).status, "completed");
  const types = [];
  for await (const e of browser.jobs.stream(handed)) types.push(e.type);
  assert.equal(types.at(-1), "completed");
  const slowJob = await client().jobs.create({ prompt: "slow, token only", params: slow() });
  assert.equal((await browser.jobs.get({ id: slowJob.id, urls: slowJob.urls }, { waitS: 30 })).status, "completed");
  const err = await browser.jobs.get(job.id).catch((e) => e);
  assert.ok(err instanceof ApiError && err.status === 401);
});

test("list pages and cancelMany", { skip }, async () => {
  const genline = new Genline({ apiKey: process.env.GENLINE_API_KEY_LIST, baseUrl: URL_ });
  const made = [(await genline.jobs.create({ prompt: "quick", params: SMALL })).id];
  for (let i = 0; i < 2; i++) made.push((await genline.jobs.create({ prompt: "slow", params: slow() })).id);
  const result = await genline.jobs.cancelMany({ ids: made.slice(1) });
  assert.equal(result.canceled, 2);
  const sizes = [];
  for await (const page of genline.jobs.list({ limit: 2 }).pages()) sizes.push(page.data.length);
  assert.deepEqual(sizes, [2, 1]);
  const all = [];
  for await (const j of genline.jobs.list({ limit: 2 })) all.push(j.id);
  assert.deepEqual(all, [...made].reverse());
  const canceled = [];
  for await (const j of genline.jobs.list({ status: ["canceled"] })) canceled.push(j.id);
  assert.deepEqual(canceled, made.slice(1).reverse());
});

test("a real webhook delivery verifies with the deployment's secret", { skip }, async () => {
  const received = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    received.push({ headers: req.headers, body: Buffer.concat(chunks) });
    res.writeHead(200).end();
  });
  const port = await listen(server);
  closers.push(() => new Promise((r) => server.close(r)));
  const job = await client().run({ prompt: "hooked", params: SMALL, webhook: { url: `http://127.0.0.1:${port}/hook`, events: ["completed"] } },
    { timeoutMs: 60_000 });
  for (let i = 0; i < 300 && !received.length; i++) await new Promise((r) => setTimeout(r, 100));
  const [delivery] = received;
  const message = await verifyWebhook(delivery.body, delivery.headers, process.env.GENLINE_WEBHOOK_SECRET);
  assert.equal(message.type, "job.completed");
  assert.equal(message.data.job.id, job.id);
  const tampered = Buffer.from(delivery.body.toString().replace("completed", "failed"));
  await assert.rejects(verifyWebhook(tampered, delivery.headers, process.env.GENLINE_WEBHOOK_SECRET), /no webhook-signature/);
});

test("an uploaded image is edited", { skip }, async () => {
  const genline = client();
  const made = await genline.run({ prompt: "a source image", params: { size: "48x32" } }, { timeoutMs: 60_000 });
  const bytes = new Uint8Array(await (await fetch(made.outputs[0].url)).arrayBuffer());
  const upload = await genline.uploads.create(bytes, { filename: "in.png" });
  assert.match(upload.id, /^upl_/);
  assert.deepEqual([upload.width, upload.height], [48, 32]);
  const edited = await genline.run({ prompt: "make it warmer", operation: "edit", inputs: { images: [upload.id] } }, { timeoutMs: 60_000 });
  assert.deepEqual(edited.inputs.images, [upload.id]);
  assert.equal(edited.outputs[0].width, 48);
});
