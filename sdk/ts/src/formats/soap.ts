/**
 * The `soap` wire format: a SOAP 1.1 envelope, UTF-8, payrail's own namespace.
 *
 *     <?xml version='1.0' encoding='utf-8'?>
 *     <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
 *                    xmlns:pr="urn:payrail:gateway:v1"><soap:Body>
 *       <pr:GatewayRequest><pr:request_id>...</pr:request_id>...</pr:GatewayRequest>
 *     </soap:Body></soap:Envelope>
 *
 * (white space added for reading; the encoder writes none, and writes exactly what
 * payrail's Python encoder writes.) `card`, `sealed_card` and `merchant` are left out
 * when there is none. A result is `<pr:GatewayResult>` with `event_id`, `payment_id`,
 * `outcome`, `failure_code`, `failure_message`, `gateway_reference` and `occur_time`
 * children; a batch is `<pr:GatewayResultBatch>` holding 1 to 500 of them. Inside a
 * batch, elements of another namespace are ignored and any other element of payrail's
 * namespace is refused. Integers are decimal without sign or leading zeros; text is
 * never trimmed. Unknown elements are ignored, duplicates refused; a `soap:Header`
 * entry with `mustUnderstand="1"` is refused because nothing here understands one. A
 * DTD, an entity declaration or a processing instruction is refused
 * (`forbidden_markup`, see ../xml.ts).
 */

import { FormatError } from "../errors.js";
import { JsonSyntaxError, decodeUtf8 } from "../json.js";
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
import { type XmlElement, XmlError, escapeText, parseXml } from "../xml.js";

export const SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/";
export const NAMESPACE = "urn:payrail:gateway:v1";
export const CONTENT_TYPE = "text/xml; charset=utf-8";
const INT_RE = /^(?:0|[1-9][0-9]{0,18})$/;
const DECLARATION = "<?xml version='1.0' encoding='utf-8'?>\n";
const ENVELOPE_OPEN = `<soap:Envelope xmlns:soap="${SOAP_ENV_NS}" xmlns:pr="${NAMESPACE}"><soap:Body>`;
const ENVELOPE_CLOSE = "</soap:Body></soap:Envelope>";
const ENCODER = new TextEncoder();

// ------------------------------------------------------------------------- encoding

function add(parts: string[], name: string, value: string | number | bigint): void {
  const text = escapeText(String(value));
  // ElementTree writes an empty element as "<tag />"; matched byte for byte.
  parts.push(text ? `<pr:${name}>${text}</pr:${name}>` : `<pr:${name} />`);
}

function message(name: string, body: string[], maxBytes: number = ENCODED_MAX_BYTES): Uint8Array {
  const document = `${DECLARATION}${ENVELOPE_OPEN}<pr:${name}>${body.join("")}</pr:${name}>${ENVELOPE_CLOSE}`;
  return checkEncoded(ENCODER.encode(document), maxBytes);
}

function addResult(parts: string[], result: GatewayResult): void {
  add(parts, "event_id", result.eventId);
  add(parts, "payment_id", result.paymentId);
  add(parts, "outcome", result.outcome);
  add(parts, "failure_code", result.failureCode);
  add(parts, "failure_message", result.failureMessage);
  add(parts, "gateway_reference", result.gatewayReference);
  add(parts, "occur_time", result.occurTime);
}

// ------------------------------------------------------------------------- decoding

function parse(data: Uint8Array, maxBytes: number): XmlElement {
  checkEncoded(data, maxBytes);
  let text: string;
  try {
    text = decodeUtf8(data);
  } catch (error) {
    if (error instanceof JsonSyntaxError) throw new FormatError("malformed");
    throw error;
  }
  try {
    return parseXml(text);
  } catch (error) {
    if (error instanceof XmlError) throw new FormatError(error.forbidden ? "forbidden_markup" : "malformed");
    throw error;
  }
}

function isSoap(element: XmlElement, local: string): boolean {
  return element.namespace === SOAP_ENV_NS && element.local === local;
}

function messageElement(data: Uint8Array, name: string, maxBytes: number = ENCODED_MAX_BYTES): XmlElement {
  const root = parse(data, maxBytes);
  if (!isSoap(root, "Envelope")) throw new FormatError("malformed", "Envelope");
  let children = root.children;
  const header = children[0];
  if (header !== undefined && isSoap(header, "Header")) {
    for (const entry of header.children) {
      if ((entry.attributes.get(`{${SOAP_ENV_NS}}mustUnderstand`) ?? "0") === "1") {
        throw new FormatError("malformed", "Header");
      }
    }
    children = children.slice(1);
  }
  const body = children[0];
  if (children.length !== 1 || body === undefined || !isSoap(body, "Body")) throw new FormatError("malformed", "Body");
  const inner = body.children[0];
  if (body.children.length !== 1 || inner === undefined || inner.namespace !== NAMESPACE || inner.local !== name) {
    // A soap:Fault, another message or several: not what this decoder reads.
    throw new FormatError("malformed", name);
  }
  return inner;
}

function fieldsOf(element: XmlElement, path: string): Map<string, XmlElement> {
  const found = new Map<string, XmlElement>();
  for (const child of element.children) {
    if (child.namespace !== NAMESPACE) continue; // another namespace: an extension
    if (found.has(child.local)) throw new FormatError("malformed", `${path}${child.local}`);
    found.set(child.local, child);
  }
  return found;
}

function text(fields: Map<string, XmlElement>, key: string, path: string, fallback?: string): string {
  const element = fields.get(key);
  if (element === undefined) {
    if (fallback === undefined) throw new FormatError("missing_field", path);
    return fallback;
  }
  if (element.children.length > 0) throw new FormatError("invalid_field", path);
  return element.text;
}

function integer(fields: Map<string, XmlElement>, key: string, path: string): bigint {
  const value = text(fields, key, path);
  if (!INT_RE.test(value)) throw new FormatError("invalid_field", path);
  return BigInt(value);
}

function resultFrom(element: XmlElement): GatewayResult {
  const fields = fieldsOf(element, "");
  const outcome = text(fields, "outcome", "outcome");
  if (outcome !== "APPROVED" && outcome !== "DECLINED") throw new FormatError("invalid_field", "outcome");
  return gatewayResult({
    eventId: text(fields, "event_id", "event_id"),
    paymentId: text(fields, "payment_id", "payment_id"),
    outcome,
    failureCode: text(fields, "failure_code", "failure_code", ""),
    failureMessage: text(fields, "failure_message", "failure_message", ""),
    gatewayReference: text(fields, "gateway_reference", "gateway_reference", ""),
    occurTime: integer(fields, "occur_time", "occur_time"),
  });
}

class SoapFormat implements WireFormat {
  readonly name = "soap" as const;
  readonly contentType = CONTENT_TYPE;

  encodeRequest(request: GatewayRequest): Uint8Array {
    const parts: string[] = [];
    add(parts, "request_id", request.requestId);
    add(parts, "payment_id", request.paymentId);
    add(parts, "attempt", request.attempt);
    add(parts, "kind", request.kind);
    add(parts, "amount_minor", request.amountMinor);
    add(parts, "currency_code", request.currencyCode);
    if (request.card !== null) {
      parts.push("<pr:card>");
      add(parts, "brand", request.card.brand);
      add(parts, "masked_number", request.card.maskedNumber);
      parts.push("</pr:card>");
    }
    if (request.sealedCard !== null) add(parts, "sealed_card", request.sealedCard.toBase64());
    if (request.merchant !== null) {
      const m = request.merchant;
      parts.push("<pr:merchant>");
      add(parts, "merchant_id", m.merchantId);
      add(parts, "name", m.name);
      add(parts, "category_code", m.categoryCode);
      add(parts, "country_code", m.countryCode);
      add(parts, "city", m.city);
      parts.push("</pr:merchant>");
    }
    add(parts, "callback_deadline", request.callbackDeadline);
    add(parts, "description", request.description);
    return message("GatewayRequest", parts);
  }

  decodeRequest(data: Uint8Array): GatewayRequest {
    const fields = fieldsOf(messageElement(data, "GatewayRequest"), "");
    let card: MaskedCard | null = null;
    const cardElement = fields.get("card");
    if (cardElement !== undefined) {
      const cardFields = fieldsOf(cardElement, "card.");
      card = maskedCard({
        brand: text(cardFields, "brand", "card.brand"),
        maskedNumber: text(cardFields, "masked_number", "card.masked_number"),
      });
    }
    let merchant: GatewayMerchant | null = null;
    const merchantElement = fields.get("merchant");
    if (merchantElement !== undefined) {
      const m = fieldsOf(merchantElement, "merchant.");
      merchant = gatewayMerchant({
        merchantId: text(m, "merchant_id", "merchant.merchant_id"),
        name: text(m, "name", "merchant.name"),
        categoryCode: text(m, "category_code", "merchant.category_code"),
        countryCode: text(m, "country_code", "merchant.country_code"),
        city: text(m, "city", "merchant.city"),
      });
    }
    let sealedCard: SealedCard | null = null;
    if (fields.has("sealed_card")) {
      try {
        sealedCard = SealedCard.fromBase64(text(fields, "sealed_card", "sealed_card"));
      } catch (error) {
        if (error instanceof SealingError) throw new FormatError("invalid_field", "sealed_card");
        throw error;
      }
    }
    return gatewayRequest({
      requestId: text(fields, "request_id", "request_id"),
      paymentId: text(fields, "payment_id", "payment_id"),
      attempt: integer(fields, "attempt", "attempt"),
      kind: text(fields, "kind", "kind"),
      amountMinor: integer(fields, "amount_minor", "amount_minor"),
      currencyCode: text(fields, "currency_code", "currency_code"),
      card,
      sealedCard,
      merchant,
      callbackDeadline: integer(fields, "callback_deadline", "callback_deadline"),
      description: text(fields, "description", "description", ""),
    });
  }

  encodeResult(result: GatewayResult): Uint8Array {
    const parts: string[] = [];
    addResult(parts, result);
    return message("GatewayResult", parts);
  }

  decodeResult(data: Uint8Array): GatewayResult {
    return resultFrom(messageElement(data, "GatewayResult"));
  }

  encodeResults(results: readonly GatewayResult[]): Uint8Array {
    const parts: string[] = [];
    for (const result of checkBatch(results)) {
      parts.push("<pr:GatewayResult>");
      addResult(parts, result);
      parts.push("</pr:GatewayResult>");
    }
    return message("GatewayResultBatch", parts, BATCH_ENCODED_MAX_BYTES);
  }

  decodeResults(data: Uint8Array): readonly GatewayResult[] {
    const batch = messageElement(data, "GatewayResultBatch", BATCH_ENCODED_MAX_BYTES);
    const decoded: GatewayResult[] = [];
    for (const child of batch.children) {
      if (child.namespace !== NAMESPACE) continue; // an extension this version does not read
      if (child.local !== "GatewayResult") throw new FormatError("malformed", "results");
      decoded.push(resultFrom(child));
    }
    return checkBatch(decoded);
  }
}

export const SOAP_FORMAT: WireFormat = new SoapFormat();
