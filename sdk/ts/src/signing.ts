/**
 * The callback signature (docs/callbacks.md, "Signing"): gateways sign, payrail verifies.
 *
 *     x-payrail-signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]
 *     v1 = lowercase_hex(HMAC-SHA256(key = secret, "<t>" || "." || payload bytes))
 *
 * Verification is four overridable steps on {@link SignatureVerifier} (parse, check
 * the timestamp, compute the expected signatures, compare in constant time), with the
 * grammar and limits of payrail's own verifier, so a gateway can check what it sends.
 */

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { inspect } from "node:util";

import { SignatureError } from "./errors.js";

export const SIGNATURE_HEADER = "x-payrail-signature";
/** How far the signed timestamp may be from the verifier's clock, both directions. */
export const TOLERANCE_S = 300;
export const SCHEME = "v1";
// A header with the maximum number of v1 entries is about 600 characters; 1024 leaves
// room for a few entries of unknown schemes without letting a caller make us scan more.
export const HEADER_MAX_CHARS = 1024;
// More v1 entries than any rotation needs are refused: each costs an HMAC comparison
// per active secret.
export const SIGNATURES_MAX = 8;
/** Elements of any scheme (t, v1, unknown ones) in one header. */
export const ELEMENTS_MAX = 16;
/** Secrets a verifier compares against; rotation needs two, the rest is headroom. */
export const SECRETS_MAX = 8;
// The gateway registry accepts no shorter secret; 32 bytes match HMAC-SHA256's strength.
export const SECRET_MIN_BYTES = 32;
// A unix timestamp in seconds has 10 digits until the year 2286; 12 bound the parse.
export const TIMESTAMP_MAX_DIGITS = 12;

const DIGEST_HEX_CHARS = 64;
const KEY_RE = /^[a-z0-9]{1,16}$/;
// Visible ASCII except the element separator.
const VALUE_RE = /^[\x21-\x2b\x2d-\x7e]+$/;
const TIMESTAMP_RE = new RegExp(`^(?:0|[1-9][0-9]{0,${TIMESTAMP_MAX_DIGITS - 1}})$`);
const HEX_DIGEST_RE = new RegExp(`^[0-9a-fA-F]{${DIGEST_HEX_CHARS}}$`);
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const REDACTED = "<redacted>";

/**
 * A gateway's callback secret. `toString`, `toJSON` and `util.inspect` are redacted;
 * `equals` is constant-time; `reveal()` returns the key bytes.
 */
export class CallbackSecret {
  readonly #value: Buffer;

  constructor(value: Uint8Array) {
    if (!(value instanceof Uint8Array)) throw new TypeError("CallbackSecret holds bytes");
    if (value.length < SECRET_MIN_BYTES) {
      // Says nothing about the value: this message may reach a log.
      throw new RangeError(`a callback secret has at least ${SECRET_MIN_BYTES} bytes`);
    }
    this.#value = Buffer.from(value);
  }

  /** A fresh random secret of the minimum length. */
  static generate(): CallbackSecret {
    return new CallbackSecret(randomBytes(SECRET_MIN_BYTES));
  }

  /** The form of the registry's secret files: standard base64, surrounding white
   * space ignored. */
  static fromBase64(text: string): CallbackSecret {
    const trimmed = text.trim();
    if (trimmed.length % 4 !== 0 || !BASE64_RE.test(trimmed)) {
      throw new RangeError("a callback secret file holds standard base64");
    }
    return new CallbackSecret(Buffer.from(trimmed, "base64"));
  }

  reveal(): Buffer {
    return Buffer.from(this.#value);
  }

  toBase64(): string {
    return this.#value.toString("base64");
  }

  equals(other: CallbackSecret): boolean {
    const theirs = other.#value;
    return theirs.length === this.#value.length && timingSafeEqual(theirs, this.#value);
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return `CallbackSecret(${REDACTED})`;
  }

  /** @internal the HMAC of `message` keyed with this secret. */
  hmac(message: Uint8Array): Buffer {
    return createHmac("sha256", this.#value).update(message).digest();
  }
}

export type SecretLike = CallbackSecret | Uint8Array;

/** A well-formed header: the signed timestamp and the decoded `v1` digests (1 to
 * {@link SIGNATURES_MAX}, in header order, duplicates kept). */
export interface ParsedSignature {
  readonly timestamp: number;
  readonly signatures: readonly Buffer[];
}

function hmacOf(secret: SecretLike, message: Uint8Array): Buffer {
  if (secret instanceof CallbackSecret) return secret.hmac(message);
  if (!(secret instanceof Uint8Array)) throw new TypeError("a callback secret is bytes or a CallbackSecret");
  if (secret.length === 0) throw new RangeError("a callback secret must not be empty");
  return createHmac("sha256", secret).update(message).digest();
}

function checkTimestampValue(timestamp: number): void {
  if (!Number.isSafeInteger(timestamp)) throw new TypeError("timestamp is an integer of unix seconds");
  if (timestamp < 0 || timestamp >= 10 ** TIMESTAMP_MAX_DIGITS) {
    throw new RangeError(`timestamp is 0 to ${TIMESTAMP_MAX_DIGITS} decimal digits`);
  }
}

/** What the HMAC covers: ASCII decimal timestamp, ".", the raw payload bytes. */
export function signedBytes(payload: Uint8Array, timestamp: number): Buffer {
  if (!(payload instanceof Uint8Array)) throw new TypeError("the payload is the raw bytes that are sent");
  checkTimestampValue(timestamp);
  return Buffer.concat([Buffer.from(`${timestamp}.`, "ascii"), payload]);
}

/** The raw 32-byte HMAC-SHA256 digest for one secret. */
export function computeSignature(payload: Uint8Array, secret: SecretLike, timestamp: number): Buffer {
  return hmacOf(secret, signedBytes(payload, timestamp));
}

/** The header value with one `v1` per secret, in the given order: while a secret
 * rotates, a gateway signs with the old and the new one. */
export function signWithSecrets(payload: Uint8Array, secrets: readonly SecretLike[], timestamp: number): string {
  if (!Array.isArray(secrets)) throw new TypeError("secrets is an array of secrets; use sign() for one");
  if (secrets.length < 1 || secrets.length > SIGNATURES_MAX) {
    throw new RangeError(`sign with 1 to ${SIGNATURES_MAX} secrets`);
  }
  const message = signedBytes(payload, timestamp);
  return [`t=${timestamp}`, ...secrets.map((s) => `${SCHEME}=${hmacOf(s, message).toString("hex")}`)].join(",");
}

/** The header value `t=<timestamp>,v1=<lowercase hex>` for one secret. */
export function sign(payload: Uint8Array, secret: SecretLike, timestamp: number): string {
  return signWithSecrets(payload, [secret], timestamp);
}

/** gRPC metadata carrying the signature, for ReportResult / ReportResults. */
export function signatureMetadata(
  payload: Uint8Array,
  secrets: readonly SecretLike[],
  timestamp: number,
): Record<string, string> {
  return { [SIGNATURE_HEADER]: signWithSecrets(payload, secrets, timestamp) };
}

export interface VerifierOptions {
  /** Seconds the timestamp may be from now, either way (default 300). */
  toleranceS?: number;
  headerMaxChars?: number;
  signaturesMax?: number;
  secretsMax?: number;
}

/** Verifies a callback signature in four overridable steps; holds only limits. */
export class SignatureVerifier {
  readonly toleranceS: number;
  readonly headerMaxChars: number;
  readonly signaturesMax: number;
  readonly secretsMax: number;

  constructor(options: VerifierOptions = {}) {
    this.toleranceS = options.toleranceS ?? TOLERANCE_S;
    if (this.toleranceS < 0) throw new RangeError("toleranceS must not be negative");
    this.headerMaxChars = options.headerMaxChars ?? HEADER_MAX_CHARS;
    this.signaturesMax = options.signaturesMax ?? SIGNATURES_MAX;
    this.secretsMax = options.secretsMax ?? SECRETS_MAX;
  }

  /** Returns when `header` carries a valid signature of `payload` by one of `secrets`,
   * made within the tolerance of `now` (unix seconds); throws {@link SignatureError}. */
  verify(payload: Uint8Array, header: string | undefined, secrets: readonly SecretLike[], now: number): void {
    if (!(payload instanceof Uint8Array)) throw new TypeError("the payload is the raw bytes that were sent");
    const parsed = this.parse(header);
    this.checkTimestamp(parsed.timestamp, now);
    const expected = this.expectedSignatures(payload, parsed.timestamp, secrets);
    this.compare(parsed.signatures, expected);
  }

  /** Step 1: the strict, bounded grammar of docs/callbacks.md. */
  parse(header: string | undefined): ParsedSignature {
    if (typeof header !== "string" || header.length === 0) throw new SignatureError("missing");
    if (header.length > this.headerMaxChars || !/^[\x00-\x7f]*$/.test(header)) throw new SignatureError("malformed");
    const elements = header.split(",");
    if (elements.length > ELEMENTS_MAX) throw new SignatureError("malformed");
    let timestamp: number | null = null;
    const signatures: Buffer[] = [];
    for (const element of elements) {
      const eq = element.indexOf("=");
      const key = eq < 0 ? element : element.slice(0, eq);
      const value = eq < 0 ? "" : element.slice(eq + 1);
      if (eq < 0 || !KEY_RE.test(key) || !VALUE_RE.test(value)) throw new SignatureError("malformed");
      if (key === "t") {
        if (timestamp !== null || !TIMESTAMP_RE.test(value)) throw new SignatureError("malformed");
        timestamp = Number(value);
      } else if (key === SCHEME) {
        if (!HEX_DIGEST_RE.test(value)) throw new SignatureError("malformed");
        signatures.push(Buffer.from(value, "hex"));
        if (signatures.length > this.signaturesMax) throw new SignatureError("malformed");
      }
      // Other schemes (a future v2, say) are skipped so they can be rolled out.
    }
    if (timestamp === null) throw new SignatureError("malformed");
    if (signatures.length === 0) throw new SignatureError("no_signature");
    return { timestamp, signatures };
  }

  /** Step 2: refuse a timestamp too far in the past (a replay outside the event-id
   * window) or in the future (a signature made to be replayed later). */
  checkTimestamp(timestamp: number, now: number): void {
    if (Math.abs(now - timestamp) > this.toleranceS) throw new SignatureError("stale");
  }

  /** Step 3: the digest each active secret gives. */
  expectedSignatures(payload: Uint8Array, timestamp: number, secrets: readonly SecretLike[]): Buffer[] {
    if (!Array.isArray(secrets)) throw new TypeError("secrets is an array of secrets");
    if (secrets.length === 0) throw new SignatureError("no_secret");
    if (secrets.length > this.secretsMax) throw new RangeError(`at most ${this.secretsMax} active secrets`);
    return secrets.map((s) => computeSignature(payload, s, timestamp));
  }

  /** Step 4: every candidate against every expected digest in constant time, with no
   * early exit, so timing says nothing about which (if any) pair matched. */
  compare(candidates: readonly Buffer[], expected: readonly Buffer[]): void {
    let matched = false;
    for (const candidate of candidates) {
      for (const digest of expected) {
        const equal = candidate.length === digest.length && timingSafeEqual(candidate, digest);
        matched = matched || equal;
      }
    }
    if (!matched) throw new SignatureError("mismatch");
  }
}

const DEFAULT_VERIFIER = new SignatureVerifier();

/** Parse a header with the default limits; {@link SignatureError} if not well formed. */
export function parseHeader(header: string | undefined): ParsedSignature {
  return DEFAULT_VERIFIER.parse(header);
}

/** Verify a callback signature; throws {@link SignatureError} with a stable reason. */
export function verify(
  payload: Uint8Array,
  header: string | undefined,
  secrets: readonly SecretLike[],
  now: number,
  toleranceS: number = TOLERANCE_S,
): void {
  const verifier = toleranceS === TOLERANCE_S ? DEFAULT_VERIFIER : new SignatureVerifier({ toleranceS });
  verifier.verify(payload, header, secrets, now);
}
