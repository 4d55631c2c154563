/**
 * docs/vectors/gateway-vectors.json, recomputed by the TypeScript SDK. The same file is
 * recomputed by payrail's Python suite and by the Go SDK, so a change in any
 * implementation that breaks interoperability fails all three. Read at test time by a
 * path relative to this package (never copied).
 */

import assert from "node:assert/strict";
import { createHash, diffieHellman } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { FormatError, SignatureError } from "../src/errors.js";
import { formatNames, getFormat } from "../src/formats/index.js";
import type { GatewayResult } from "../src/model.js";
import { HKDF_INFO, SealedCard, loadPrivateKey, loadPublicKey, publicKeyToRaw, sealWith, unseal, unsealCard } from "../src/sealing.js";
import { signWithSecrets, verify } from "../src/signing.js";
import { hkdfSync } from "node:crypto";

// build-test/test/ -> sdk/ts -> repository root
const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const FILE = resolve(PACKAGE_DIR, "../../docs/vectors/gateway-vectors.json");

interface SignatureVector {
  name: string;
  format?: string;
  secrets_hex: string[];
  timestamp: number;
  payload_hex: string;
  delivered_payload_hex?: string;
  header: string;
  now: number;
  result: string;
  results?: { event_id: string; payment_id: string; outcome: string }[];
}

type Fields = Record<string, unknown>;
interface PayloadVector {
  name: string;
  format: string;
  payload_hex: string;
  fields: Fields;
}

const VECTORS = JSON.parse(readFileSync(FILE, "utf8")) as {
  signature: SignatureVector[];
  batch_signature: SignatureVector[];
  seal: Record<string, string>;
  requests: PayloadVector[];
  results: PayloadVector[];
  refused: { name: string; format: string; what: string; payload_hex: string }[];
};
const SEAL = VECTORS.seal as Record<string, string>;
const hex = (text: string): Buffer => Buffer.from(text, "hex");

function resultFields(result: GatewayResult): Fields {
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

function checkSignature(vector: SignatureVector): void {
  const secrets = vector.secrets_hex.map(hex);
  const payload = hex(vector.payload_hex);
  assert.equal(signWithSecrets(payload, secrets, vector.timestamp), vector.header);
  const delivered = hex(vector.delivered_payload_hex ?? vector.payload_hex);
  if (vector.result === "accept") {
    // A verifier holding either secret alone accepts (rotation).
    for (const secret of secrets) verify(delivered, vector.header, [secret], vector.now);
    return;
  }
  assert.throws(
    () => verify(delivered, vector.header, secrets, vector.now),
    (error: unknown) => error instanceof SignatureError && `refuse ${error.reason}` === vector.result,
  );
}

describe("gateway vectors", () => {
  it("has every section", () => {
    assert.deepEqual(new Set(VECTORS.signature.map((v) => v.result)), new Set(["accept", "refuse stale", "refuse mismatch"]));
    const names = new Set(formatNames());
    assert.deepEqual(new Set(VECTORS.batch_signature.map((v) => v.format)), names);
    assert.deepEqual(new Set(VECTORS.requests.map((v) => v.format)), names);
    assert.deepEqual(new Set(VECTORS.results.map((v) => v.format)), names);
    assert.deepEqual(new Set(VECTORS.refused.map((v) => v.what)), new Set(["request", "result"]));
  });

  for (const vector of VECTORS.signature) {
    it(`signature ${vector.name}`, () => checkSignature(vector));
  }

  for (const vector of VECTORS.batch_signature) {
    it(`batch signature ${vector.name}`, () => {
      const wire = getFormat(vector.format as string);
      const payload = hex(vector.payload_hex);
      const results = wire.decodeResults(payload);
      assert.deepEqual(
        results.map((r) => ({ event_id: r.eventId, payment_id: r.paymentId, outcome: r.outcome })),
        vector.results,
      );
      // Our encoder writes payrail's bytes for the same batch.
      assert.deepEqual(Buffer.from(wire.encodeResults(results)), payload);
      checkSignature(vector);
    });
  }

  it("seal vector, step by step, and opening", () => {
    const recipient = loadPrivateKey(hex(SEAL.recipient_private_key_hex as string));
    const ephemeral = loadPrivateKey(hex(SEAL.ephemeral_private_key_hex as string));
    assert.equal(publicKeyToRaw(recipient).toString("hex"), SEAL.recipient_public_key_hex);
    assert.equal(publicKeyToRaw(ephemeral).toString("hex"), SEAL.ephemeral_public_key_hex);
    const shared = diffieHellman({ privateKey: ephemeral, publicKey: loadPublicKey(hex(SEAL.recipient_public_key_hex as string)) });
    assert.equal(shared.toString("hex"), SEAL.shared_secret_hex);
    const salt = Buffer.concat([publicKeyToRaw(ephemeral), publicKeyToRaw(recipient)]);
    assert.equal(salt.toString("hex"), SEAL.hkdf_salt_hex);
    assert.equal(HKDF_INFO, SEAL.hkdf_info_text);
    const key = Buffer.from(hkdfSync("sha256", shared, salt, Buffer.from(HKDF_INFO), 32));
    assert.equal(key.toString("hex"), SEAL.aes_key_hex);
    const plaintext = hex(SEAL.plaintext_hex as string);
    assert.equal(plaintext.toString("utf8"), SEAL.plaintext_text);
    const sealed = sealWith(
      ephemeral,
      hex(SEAL.nonce_hex as string),
      hex(SEAL.recipient_public_key_hex as string),
      plaintext,
      Buffer.from(SEAL.associated_data_text as string, "utf8"),
    );
    assert.equal(sealed.toBytes().toString("hex"), SEAL.envelope_hex);
    assert.equal(sealed.toBase64(), SEAL.envelope_base64);
    const opened = unseal(recipient, hex(SEAL.envelope_hex as string), Buffer.from(SEAL.associated_data_text as string, "utf8"));
    assert.deepEqual(opened, plaintext);
  });

  for (const vector of VECTORS.requests) {
    it(`request ${vector.name}`, () => {
      const wire = getFormat(vector.format);
      const payload = hex(vector.payload_hex);
      const request = wire.decodeRequest(payload);
      const f = vector.fields;
      assert.deepEqual(
        {
          request_id: request.requestId,
          payment_id: request.paymentId,
          attempt: request.attempt,
          kind: request.kind,
          amount_minor: request.amountMinor.toString(),
          currency_code: request.currencyCode,
          card: request.card === null ? null : { brand: request.card.brand, masked_number: request.card.maskedNumber },
          sealed_card_base64: request.sealedCard === null ? null : request.sealedCard.toBase64(),
          merchant:
            request.merchant === null
              ? null
              : {
                  merchant_id: request.merchant.merchantId,
                  name: request.merchant.name,
                  category_code: request.merchant.categoryCode,
                  country_code: request.merchant.countryCode,
                  city: request.merchant.city,
                },
          callback_deadline: request.callbackDeadline,
          description: request.description,
        },
        f,
      );
      // Our encoder writes payrail's bytes for the same request.
      assert.deepEqual(Buffer.from(wire.encodeRequest(request)), payload);
      if (request.sealedCard === null) return;
      // Every SDK opens this card with the seal vector's key, to the same document.
      const card = unsealCard(
        loadPrivateKey(hex(SEAL.recipient_private_key_hex as string)),
        SealedCard.fromBase64(f.sealed_card_base64 as string),
        request.paymentId,
      );
      assert.deepEqual(card.toJsonBytes(), hex(SEAL.plaintext_hex as string));
    });
  }

  for (const vector of VECTORS.results) {
    it(`result ${vector.name}`, () => {
      const wire = getFormat(vector.format);
      const payload = hex(vector.payload_hex);
      const result = wire.decodeResult(payload);
      assert.deepEqual(resultFields(result), vector.fields);
      const encoded = wire.encodeResult(result);
      assert.deepEqual(resultFields(wire.decodeResult(encoded)), vector.fields);
      // Byte for byte what payrail's encoder writes (sorted JSON keys, ElementTree's
      // XML, deterministic protobuf).
      assert.equal(createHash("sha256").update(encoded).digest("hex"), createHash("sha256").update(payload).digest("hex"));
    });
  }

  for (const vector of VECTORS.refused) {
    it(`refused ${vector.name}`, () => {
      const wire = getFormat(vector.format);
      const payload = hex(vector.payload_hex);
      const decode = vector.what === "request" ? () => wire.decodeRequest(payload) : () => wire.decodeResult(payload);
      assert.throws(decode, FormatError);
    });
  }
});
