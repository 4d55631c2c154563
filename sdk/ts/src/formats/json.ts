/**
 * The `json` wire format: UTF-8 JSON objects, sorted keys, no insignificant white space.
 *
 * A request:
 *
 *     {"amount_minor":1000,"attempt":1,"callback_deadline":1700000030,
 *      "card":{"brand":"VISA","masked_number":"424242******4242"},"currency_code":"AUD",
 *      "description":"","kind":"DEPOSIT","merchant":null,"payment_id":"...",
 *      "request_id":"...","sealed_card":"<base64 envelope>"}
 *
 * `card`, `sealed_card` and `merchant` are null (or absent) when there is none. A result:
 *
 *     {"event_id":"...","failure_code":"","failure_message":"","gateway_reference":"...",
 *      "occur_time":1700000000,"outcome":"APPROVED","payment_id":"..."}
 *
 * A batch is `{"results":[{...},{...}]}` (1 to 500, applied in order; other keys are
 * ignored). Decoding is strict: integers are JSON integers (not 1.0, "1" or true),
 * strings are strings, a key appears at most once. Unknown keys are ignored so payrail
 * can add fields without breaking deployed gateways.
 */

import { FormatError } from "../errors.js";
import {
  type Encodable,
  type JsonObject,
  type JsonValue,
  JsonSyntaxError,
  canonicalJson,
  decodeUtf8,
  parseJson,
} from "../json.js";
import {
  BATCH_ENCODED_MAX_BYTES,
  ENCODED_MAX_BYTES,
  type GatewayMerchant,
  type GatewayRequest,
  type GatewayResult,
  type MaskedCard,
  type WireFormat,
  checkBatch,
  checkEncoded,
  gatewayMerchant,
  gatewayRequest,
  gatewayResult,
  maskedCard,
} from "../model.js";
import { SealedCard } from "../sealing.js";
import { SealingError } from "../errors.js";

export const CONTENT_TYPE = "application/json";

const ENCODER = new TextEncoder();

/** Canonical bytes of a document. */
export function dumps(document: Encodable): Uint8Array {
  return ENCODER.encode(canonicalJson(document));
}

/** A bounded, strict parse of one JSON object. */
export function loadsObject(data: Uint8Array, maxBytes: number = ENCODED_MAX_BYTES): JsonObject {
  checkEncoded(data, maxBytes);
  let document: JsonValue;
  try {
    document = parseJson(decodeUtf8(data));
  } catch (error) {
    // Not described further: the offending text is input, and input never reaches an
    // error message.
    if (error instanceof JsonSyntaxError) throw new FormatError("malformed");
    throw error;
  }
  if (!(document instanceof Map)) throw new FormatError("malformed");
  return document;
}

function field(document: JsonObject, key: string, path: string): JsonValue {
  const value = document.get(key);
  if (value === undefined) throw new FormatError("missing_field", path);
  return value;
}

function optionalObject(value: JsonValue | undefined, path: string): JsonObject | null {
  if (value === undefined || value === null) return null;
  if (!(value instanceof Map)) throw new FormatError("invalid_field", path);
  return value;
}

export function requestToDocument(request: GatewayRequest): Encodable {
  const { card, merchant } = request;
  return {
    request_id: request.requestId,
    payment_id: request.paymentId,
    attempt: request.attempt,
    kind: request.kind,
    amount_minor: request.amountMinor,
    currency_code: request.currencyCode,
    card: card === null ? null : { brand: card.brand, masked_number: card.maskedNumber },
    sealed_card: request.sealedCard === null ? null : request.sealedCard.toBase64(),
    merchant:
      merchant === null
        ? null
        : {
            merchant_id: merchant.merchantId,
            name: merchant.name,
            category_code: merchant.categoryCode,
            country_code: merchant.countryCode,
            city: merchant.city,
          },
    callback_deadline: request.callbackDeadline,
    description: request.description,
  };
}

export function requestFromDocument(document: JsonObject): GatewayRequest {
  const cardDoc = optionalObject(document.get("card"), "card");
  let card: MaskedCard | null = null;
  if (cardDoc !== null) {
    card = maskedCard({
      brand: field(cardDoc, "brand", "card.brand"),
      maskedNumber: field(cardDoc, "masked_number", "card.masked_number"),
    });
  }
  const merchantDoc = optionalObject(document.get("merchant"), "merchant");
  let merchant: GatewayMerchant | null = null;
  if (merchantDoc !== null) {
    merchant = gatewayMerchant({
      merchantId: field(merchantDoc, "merchant_id", "merchant.merchant_id"),
      name: field(merchantDoc, "name", "merchant.name"),
      categoryCode: field(merchantDoc, "category_code", "merchant.category_code"),
      countryCode: field(merchantDoc, "country_code", "merchant.country_code"),
      city: field(merchantDoc, "city", "merchant.city"),
    });
  }
  const sealedText = document.get("sealed_card");
  let sealedCard: SealedCard | null = null;
  if (sealedText !== undefined && sealedText !== null) {
    if (typeof sealedText !== "string") throw new FormatError("invalid_field", "sealed_card");
    try {
      sealedCard = SealedCard.fromBase64(sealedText);
    } catch (error) {
      if (error instanceof SealingError) throw new FormatError("invalid_field", "sealed_card");
      throw error;
    }
  }
  const description = document.get("description");
  return gatewayRequest({
    requestId: field(document, "request_id", "request_id"),
    paymentId: field(document, "payment_id", "payment_id"),
    attempt: field(document, "attempt", "attempt"),
    kind: field(document, "kind", "kind"),
    amountMinor: field(document, "amount_minor", "amount_minor"),
    currencyCode: field(document, "currency_code", "currency_code"),
    card,
    sealedCard,
    merchant,
    callbackDeadline: field(document, "callback_deadline", "callback_deadline"),
    // Absent means empty; null is not a string and is refused by the rule.
    description: description === undefined ? "" : description,
  });
}

export function resultToDocument(result: GatewayResult): Encodable {
  return {
    event_id: result.eventId,
    payment_id: result.paymentId,
    outcome: result.outcome,
    failure_code: result.failureCode,
    failure_message: result.failureMessage,
    gateway_reference: result.gatewayReference,
    occur_time: result.occurTime,
  };
}

function optionalText(document: JsonObject, key: string): JsonValue {
  const value = document.get(key);
  return value === undefined ? "" : value;
}

export function resultFromDocument(document: JsonObject): GatewayResult {
  return gatewayResult({
    eventId: field(document, "event_id", "event_id"),
    paymentId: field(document, "payment_id", "payment_id"),
    outcome: field(document, "outcome", "outcome"),
    failureCode: optionalText(document, "failure_code"),
    failureMessage: optionalText(document, "failure_message"),
    gatewayReference: optionalText(document, "gateway_reference"),
    occurTime: field(document, "occur_time", "occur_time"),
  });
}

export function resultsFromDocument(document: JsonObject): readonly GatewayResult[] {
  const items = field(document, "results", "results");
  if (!Array.isArray(items)) throw new FormatError("invalid_field", "results");
  const decoded: GatewayResult[] = [];
  for (const item of items) {
    if (!(item instanceof Map)) throw new FormatError("invalid_field", "results");
    decoded.push(resultFromDocument(item));
  }
  return checkBatch(decoded);
}

class JsonFormat implements WireFormat {
  readonly name = "json" as const;
  readonly contentType = CONTENT_TYPE;

  encodeRequest(request: GatewayRequest): Uint8Array {
    return checkEncoded(dumps(requestToDocument(request)));
  }

  decodeRequest(data: Uint8Array): GatewayRequest {
    return requestFromDocument(loadsObject(data));
  }

  encodeResult(result: GatewayResult): Uint8Array {
    return checkEncoded(dumps(resultToDocument(result)));
  }

  decodeResult(data: Uint8Array): GatewayResult {
    return resultFromDocument(loadsObject(data));
  }

  encodeResults(results: readonly GatewayResult[]): Uint8Array {
    const batch = checkBatch(results);
    return checkEncoded(dumps({ results: batch.map(resultToDocument) }), BATCH_ENCODED_MAX_BYTES);
  }

  decodeResults(data: Uint8Array): readonly GatewayResult[] {
    return resultsFromDocument(loadsObject(data, BATCH_ENCODED_MAX_BYTES));
  }
}

export const JSON_FORMAT: WireFormat = new JsonFormat();
