/**
 * The SDK's error classes. None of them ever carries the input that caused it: a
 * message, a `reason` or a `field` may reach a log line, and input may hold card data
 * or secrets.
 */

/** Why bytes are not a valid message of a wire format (stable, safe to log). */
export type FormatReason =
  | "oversized"
  | "malformed"
  | "forbidden_markup"
  | "missing_field"
  | "invalid_field"
  | "unknown_format";

/**
 * Bytes that are not a valid message of a format, or a field out of its rules.
 * `field` names the offending field when there is one (e.g. `card.masked_number`).
 */
export class FormatError extends Error {
  override readonly name = "FormatError";
  readonly reason: FormatReason;
  readonly field: string;

  constructor(reason: FormatReason, field = "") {
    super(field ? `${reason}: ${field}` : reason);
    this.reason = reason;
    this.field = field;
  }
}

/** Why a sealed envelope or a key was not usable (stable, safe to log). */
export type SealingReason = "malformed" | "unsupported_version" | "unseal_failed" | "invalid_key";

/**
 * A sealed card or a key that could not be used. `unseal_failed` covers a wrong key,
 * another payment's id and a tampered envelope alike: they are deliberately not told
 * apart, and the message never describes the content.
 */
export class SealingError extends Error {
  override readonly name = "SealingError";
  readonly reason: SealingReason;

  constructor(reason: SealingReason) {
    super(`sealed card not usable: ${reason}`);
    this.reason = reason;
  }
}

/**
 * Why a callback signature was not accepted (stable, safe to log):
 * `missing` (no header), `malformed` (breaks the grammar or a limit), `no_signature`
 * (no `v1` element), `stale` (more than the tolerance away from now, either way),
 * `mismatch` (no `v1` matches any secret), `no_secret` (no secret to verify with).
 */
export type SignatureReason =
  | "missing"
  | "malformed"
  | "no_signature"
  | "stale"
  | "mismatch"
  | "no_secret";

/** A callback signature that was not accepted; never carries the header or a secret. */
export class SignatureError extends Error {
  override readonly name = "SignatureError";
  readonly reason: SignatureReason;

  constructor(reason: SignatureReason) {
    super(`callback signature not accepted: ${reason}`);
    this.reason = reason;
  }
}
