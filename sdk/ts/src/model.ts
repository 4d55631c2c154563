/**
 * What every wire format carries, with every field rule and limit of payrail's
 * reference SDK (gateway_sdk/formats/base.py). {@link gatewayRequest} and
 * {@link gatewayResult} check every field, so a decoder only turns its format into
 * values; anything out of range becomes a {@link FormatError} naming the field, never
 * echoing its value.
 */

import { FormatError } from "./errors.js";
import { JsonNumber } from "./json.js";
import { SealedCard } from "./sealing.js";

export type Kind = "DEPOSIT" | "WITHDRAWAL" | "PURCHASE";
export type Outcome = "APPROVED" | "DECLINED";
export const KINDS: readonly Kind[] = ["DEPOSIT", "WITHDRAWAL", "PURCHASE"];
export const OUTCOMES: readonly Outcome[] = ["APPROVED", "DECLINED"];

// Every encoded request or result; the largest legitimate request is under 8 KiB even
// with every text field at its maximum in 4-byte characters and XML escaping.
export const ENCODED_MAX_BYTES = 16_384;
// A batch of results (ReportResults): at most this many results and bytes.
export const BATCH_RESULTS_MAX = 500;
export const BATCH_ENCODED_MAX_BYTES = 1_048_576;
export const ID_MAX_CHARS = 128;
export const DESCRIPTION_MAX_CHARS = 500;
export const FAILURE_CODE_MAX_CHARS = 64;
export const FAILURE_MESSAGE_MAX_CHARS = 500;
export const GATEWAY_REFERENCE_MAX_CHARS = 128;
export const MERCHANT_ID_MAX_CHARS = 64;
export const MERCHANT_NAME_MAX_CHARS = 100;
export const MERCHANT_CITY_MAX_CHARS = 100;
export const BRAND_MAX_CHARS = 32;
// Re-dispatch count and amounts are int32 / int64 in payrail's contracts.
export const ATTEMPT_MAX = 2 ** 31 - 1;
export const AMOUNT_MINOR_MAX = 2n ** 63n - 1n;
// 9999-12-31T23:59:59Z: every format can represent it, and no deadline is later.
export const UNIX_SECONDS_MAX = 253_402_300_799;

// Visible ASCII: ids travel in headers, logs and URLs of every language.
const ID_RE = /^[\x21-\x7e]+$/;
const CURRENCY_RE = /^[A-Z]{3}$/;
const BRAND_RE = /^[A-Z_]*$/;
// BIN and last four around 2 to 9 stars (card numbers of 12 to 19 digits), or nothing
// (a wallet-funded purchase): a full card number cannot fit this shape.
const MASKED_NUMBER_RE = /^(?:[0-9]{6}\*{2,9}[0-9]{4})?$/;
const MCC_RE = /^(?:[0-9]{4})?$/;
const COUNTRY_RE = /^(?:[A-Z]{2})?$/;
const FAILURE_CODE_RE = /^[A-Za-z0-9_.:-]*$/;

/** What a gateway may see of the card in clear: brand and BIN + last four. */
export interface MaskedCard {
  /** VISA, MASTERCARD, AMERICAN_EXPRESS, DISCOVER, or UNSPECIFIED. */
  readonly brand: string;
  /** e.g. `424242******4242`; empty when there is no card. */
  readonly maskedNumber: string;
}

/** Where a purchase is made; every field may be empty. */
export interface GatewayMerchant {
  readonly merchantId: string;
  readonly name: string;
  /** ISO 18245 MCC, four digits. */
  readonly categoryCode: string;
  /** ISO 3166-1 alpha-2, upper case. */
  readonly countryCode: string;
  readonly city: string;
}

/** One payment handed to a gateway. The card is masked except inside `sealedCard`,
 * which only the gateway's private key opens (associated data: the payment id). */
export interface GatewayRequest {
  /** The dispatch's event id: the same on a redelivery. */
  readonly requestId: string;
  readonly paymentId: string;
  /** 1 for the first dispatch, more for re-dispatches of the same payment. */
  readonly attempt: number;
  readonly kind: Kind;
  /** Positive, in the currency's minor units (int64). */
  readonly amountMinor: bigint;
  /** ISO 4217 alphabetic, e.g. "AUD". */
  readonly currencyCode: string;
  readonly card: MaskedCard | null;
  /** null for wallet-funded purchases. */
  readonly sealedCard: SealedCard | null;
  /** Purchases only. */
  readonly merchant: GatewayMerchant | null;
  /** Unix seconds; report the result before it. */
  readonly callbackDeadline: number;
  readonly description: string;
}

/** A gateway's outcome for one payment; mirrors `payrail.callbacks.v1.GatewayResult`.
 * APPROVED carries no failure code or message; DECLINED needs a failure code. */
export interface GatewayResult {
  /** Unique per callback event among this gateway's events; replays are dropped. */
  readonly eventId: string;
  readonly paymentId: string;
  readonly outcome: Outcome;
  /** Machine-readable, e.g. `card_declined`; empty when approved. */
  readonly failureCode: string;
  readonly failureMessage: string;
  /** The provider's own reference for the charge. */
  readonly gatewayReference: string;
  /** Unix seconds when the provider decided. */
  readonly occurTime: number;
}

// ---------------------------------------------------------------------- field rules

function isForbiddenChar(codePoint: number, allow: string): boolean {
  // Cc: C0/C1 controls (log injection, not XML); lone surrogates (not UTF-8);
  // U+FFFE/U+FFFF (not XML 1.0 characters).
  const control = codePoint <= 0x1f || (codePoint >= 0x7f && codePoint <= 0x9f);
  if (control) return !allow.includes(String.fromCodePoint(codePoint));
  return (codePoint >= 0xd800 && codePoint <= 0xdfff) || codePoint === 0xfffe || codePoint === 0xffff;
}

/** An optional field: absent (undefined) is empty; null is not a string and is refused. */
function orEmpty(value: unknown): unknown {
  return value === undefined ? "" : value;
}

function requireText(field: string, value: unknown, maxChars: number, allow = "", required = false): string {
  if (typeof value !== "string") throw new FormatError("invalid_field", field);
  if (required && value.length === 0) throw new FormatError("missing_field", field);
  let chars = 0;
  // for..of walks code points (a lone surrogate is one step), as Python counts.
  for (const ch of value) {
    chars += 1;
    if (isForbiddenChar(ch.codePointAt(0) as number, allow)) throw new FormatError("invalid_field", field);
  }
  if (chars > maxChars) throw new FormatError("invalid_field", field);
  return value;
}

function requireMatch(field: string, value: unknown, pattern: RegExp, maxChars: number): string {
  if (typeof value !== "string") throw new FormatError("invalid_field", field);
  if (value.length > maxChars || !pattern.test(value)) throw new FormatError("invalid_field", field);
  return value;
}

function requireId(field: string, value: unknown): string {
  if (value === "") throw new FormatError("missing_field", field);
  return requireMatch(field, value, ID_RE, ID_MAX_CHARS);
}

/** An integer in [minimum, maximum] from a decoder's value: a bigint, a safe integer,
 * or a JSON number without fraction or exponent (1.0 and "1" are not integers). */
export function requireInt(field: string, value: unknown, minimum: bigint, maximum: bigint): bigint {
  let integer: bigint;
  if (typeof value === "bigint") {
    integer = value;
  } else if (typeof value === "number" && Number.isSafeInteger(value)) {
    integer = BigInt(value);
  } else if (value instanceof JsonNumber && value.isInteger && value.text.length <= 40) {
    integer = BigInt(value.text);
  } else {
    throw new FormatError("invalid_field", field);
  }
  if (integer < minimum || integer > maximum) throw new FormatError("invalid_field", field);
  return integer;
}

function requireSmallInt(field: string, value: unknown, minimum: number, maximum: number): number {
  return Number(requireInt(field, value, BigInt(minimum), BigInt(maximum)));
}

// ------------------------------------------------------------------------- messages

/** What a decoder found for a masked card; checked by {@link maskedCard}. */
export interface MaskedCardFields {
  brand: unknown;
  maskedNumber: unknown;
}

export function maskedCard(fields: MaskedCardFields): MaskedCard {
  return Object.freeze({
    brand: requireMatch("card.brand", fields.brand, BRAND_RE, BRAND_MAX_CHARS),
    maskedNumber: requireMatch("card.masked_number", fields.maskedNumber, MASKED_NUMBER_RE, 19),
  });
}

export interface MerchantFields {
  merchantId?: unknown;
  name?: unknown;
  categoryCode?: unknown;
  countryCode?: unknown;
  city?: unknown;
}

export function gatewayMerchant(fields: MerchantFields): GatewayMerchant {
  return Object.freeze({
    merchantId: requireText("merchant.merchant_id", orEmpty(fields.merchantId), MERCHANT_ID_MAX_CHARS),
    name: requireText("merchant.name", orEmpty(fields.name), MERCHANT_NAME_MAX_CHARS),
    categoryCode: requireMatch("merchant.category_code", orEmpty(fields.categoryCode), MCC_RE, 4),
    countryCode: requireMatch("merchant.country_code", orEmpty(fields.countryCode), COUNTRY_RE, 2),
    city: requireText("merchant.city", orEmpty(fields.city), MERCHANT_CITY_MAX_CHARS),
  });
}

/** What a decoder found for a request; checked by {@link gatewayRequest}. */
export interface RequestFields {
  requestId: unknown;
  paymentId: unknown;
  attempt: unknown;
  kind: unknown;
  amountMinor: unknown;
  currencyCode: unknown;
  card?: MaskedCard | null;
  sealedCard?: SealedCard | null;
  merchant?: GatewayMerchant | null;
  callbackDeadline: unknown;
  description?: unknown;
}

/** A checked, frozen request, in the order of the reference SDK's checks. */
export function gatewayRequest(fields: RequestFields): GatewayRequest {
  const requestId = requireId("request_id", fields.requestId);
  const paymentId = requireId("payment_id", fields.paymentId);
  const attempt = requireSmallInt("attempt", fields.attempt, 1, ATTEMPT_MAX);
  if (!KINDS.includes(fields.kind as Kind)) throw new FormatError("invalid_field", "kind");
  const amountMinor = requireInt("amount_minor", fields.amountMinor, 1n, AMOUNT_MINOR_MAX);
  const currencyCode = requireMatch("currency_code", fields.currencyCode, CURRENCY_RE, 3);
  const card = fields.card ?? null;
  const sealedCard = fields.sealedCard ?? null;
  if (sealedCard !== null && !(sealedCard instanceof SealedCard)) {
    throw new FormatError("invalid_field", "sealed_card");
  }
  const merchant = fields.merchant ?? null;
  const callbackDeadline = requireSmallInt("callback_deadline", fields.callbackDeadline, 0, UNIX_SECONDS_MAX);
  const description = requireText("description", orEmpty(fields.description), DESCRIPTION_MAX_CHARS, "\n\t");
  return Object.freeze({
    requestId,
    paymentId,
    attempt,
    kind: fields.kind as Kind,
    amountMinor,
    currencyCode,
    card,
    sealedCard,
    merchant,
    callbackDeadline,
    description,
  });
}

/** What a decoder (or a handler) gives for a result; checked by {@link gatewayResult}. */
export interface ResultFields {
  eventId: unknown;
  paymentId: unknown;
  outcome: unknown;
  failureCode?: unknown;
  failureMessage?: unknown;
  gatewayReference?: unknown;
  occurTime: unknown;
}

/** A checked, frozen result. */
export function gatewayResult(fields: ResultFields): GatewayResult {
  const eventId = requireId("event_id", fields.eventId);
  const paymentId = requireId("payment_id", fields.paymentId);
  if (!OUTCOMES.includes(fields.outcome as Outcome)) throw new FormatError("invalid_field", "outcome");
  const outcome = fields.outcome as Outcome;
  const failureCode = requireMatch("failure_code", orEmpty(fields.failureCode), FAILURE_CODE_RE, FAILURE_CODE_MAX_CHARS);
  const failureMessage = requireText("failure_message", orEmpty(fields.failureMessage), FAILURE_MESSAGE_MAX_CHARS, "\n\t");
  const gatewayReference = requireText("gateway_reference", orEmpty(fields.gatewayReference), GATEWAY_REFERENCE_MAX_CHARS);
  const occurTime = requireSmallInt("occur_time", fields.occurTime, 0, UNIX_SECONDS_MAX);
  if (outcome === "APPROVED" && (failureCode || failureMessage)) throw new FormatError("invalid_field", "failure_code");
  if (outcome === "DECLINED" && !failureCode) throw new FormatError("missing_field", "failure_code");
  return Object.freeze({ eventId, paymentId, outcome, failureCode, failureMessage, gatewayReference, occurTime });
}

/** The results of a batch, checked for count (1 to {@link BATCH_RESULTS_MAX}). */
export function checkBatch(results: readonly GatewayResult[]): readonly GatewayResult[] {
  if (!Array.isArray(results)) throw new TypeError("a batch is an array of GatewayResult");
  if (results.length < 1 || results.length > BATCH_RESULTS_MAX) throw new FormatError("invalid_field", "results");
  return results;
}

/** Every decoder starts with this (and every encoder ends with it): at most
 * `maxBytes` bytes. */
export function checkEncoded(data: Uint8Array, maxBytes: number = ENCODED_MAX_BYTES): Uint8Array {
  if (!(data instanceof Uint8Array)) throw new TypeError("a wire message is bytes (Uint8Array)");
  if (data.length > maxBytes) throw new FormatError("oversized");
  return data;
}

/** One wire format: `json`, `soap` or `protobuf`. Encoders take checked messages;
 * decoders refuse anything oversized, unparseable or out of a field's rules with
 * {@link FormatError}. */
export interface WireFormat {
  readonly name: "json" | "soap" | "protobuf";
  readonly contentType: string;
  encodeRequest(request: GatewayRequest): Uint8Array;
  decodeRequest(data: Uint8Array): GatewayRequest;
  encodeResult(result: GatewayResult): Uint8Array;
  decodeResult(data: Uint8Array): GatewayResult;
  /** 1 to 500 results, in order; `oversized` beyond {@link BATCH_ENCODED_MAX_BYTES}. */
  encodeResults(results: readonly GatewayResult[]): Uint8Array;
  decodeResults(data: Uint8Array): readonly GatewayResult[];
}
