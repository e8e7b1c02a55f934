// Standard Webhooks verification with Web Crypto (DESIGN §4).
import { WebhookVerificationError } from "./errors.js";
import type { WebhookMessage } from "./types.js";

export const TOLERANCE_S = 300;

export type HeaderSource = Headers | Record<string, string | string[] | undefined>;

export interface VerifyOptions {
  /** How far the delivery's timestamp may be from now (replay protection). */
  toleranceS?: number;
  /** Now, in seconds since the epoch (for tests). */
  nowS?: number;
}

function header(headers: HeaderSource, name: string): string | null {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name);
  for (const [key, value] of Object.entries(headers as Record<string, string | string[] | undefined>)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(" ") : value ?? null;
  }
  return null;
}

async function subtle(): Promise<SubtleCrypto> {
  if (globalThis.crypto?.subtle) return globalThis.crypto.subtle;
  // Node 18 has Web Crypto but not on globalThis; the name is a variable so bundlers leave it alone.
  const name = "node:crypto";
  const mod = await import(name);
  return mod.webcrypto.subtle as SubtleCrypto;
}

function base64ToBytes(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function sameString(a: string, b: string): boolean {
  // Constant time for equal lengths, so a signature cannot be guessed byte by byte.
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * Check a delivery's `webhook-signature` and return its message. `body` must be
 * the raw request body (a string or bytes, exactly as received).
 */
export async function verify(body: string | Uint8Array, headers: HeaderSource, secret: string,
  options: VerifyOptions = {}): Promise<WebhookMessage> {
  const id = header(headers, "webhook-id");
  const stamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !stamp || !signatures) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header");
  }
  const sent = Number(stamp);
  if (!Number.isInteger(sent)) throw new WebhookVerificationError("webhook-timestamp is not a whole number of seconds");
  const tolerance = options.toleranceS ?? TOLERANCE_S;
  const now = options.nowS ?? Date.now() / 1000;
  if (Math.abs(now - sent) > tolerance) {
    throw new WebhookVerificationError(`webhook-timestamp is more than ${tolerance} s from now`);
  }
  let key: Uint8Array<ArrayBuffer>;
  try {
    key = base64ToBytes(secret.startsWith("whsec_") ? secret.slice(6) : secret);
  } catch {
    throw new WebhookVerificationError("the secret is not a whsec_<base64> signing secret");
  }
  const raw = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const prefix = new TextEncoder().encode(`${id}.${stamp}.`);
  const signed = new Uint8Array(prefix.length + raw.length);
  signed.set(prefix);
  signed.set(raw, prefix.length);
  const crypto = await subtle();
  const hmac = await crypto.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const expected = bytesToBase64(new Uint8Array(await crypto.sign("HMAC", hmac, signed)));
  const offered = signatures.split(" ").filter((s) => s.startsWith("v1,")).map((s) => s.slice(3));
  if (!offered.some((s) => sameString(s, expected))) {
    throw new WebhookVerificationError("no webhook-signature matches this body and secret");
  }
  try {
    return { id, ...JSON.parse(new TextDecoder().decode(raw)) } as WebhookMessage;
  } catch {
    throw new WebhookVerificationError("the body is not JSON");
  }
}
