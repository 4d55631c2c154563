/** Card sealing: round trips, every way an envelope fails, and a card that never
 * shows itself in a log. */

import assert from "node:assert/strict";
import { inspect } from "node:util";
import { describe, it } from "node:test";

import { SealingError } from "../src/errors.js";
import {
  Card,
  SealedCard,
  generateKeyPair,
  loadPrivateKey,
  loadPublicKey,
  privateKeyToRaw,
  publicKeyToRaw,
  seal,
  sealCard,
  unseal,
  unsealCard,
} from "../src/sealing.js";

const card = new Card({ number: "4242424242424242", expMonth: 12, expYear: 2030, cvc: "123", holderName: "Jane Müller" });

function refusesWith(fn: () => unknown, reason: string): void {
  assert.throws(fn, (error: unknown) => error instanceof SealingError && error.reason === reason);
}

describe("sealing", () => {
  it("opens what it sealed, bound to the payment id", () => {
    const { privateKey, publicKey } = generateKeyPair();
    const sealed = sealCard(publicKeyToRaw(publicKey), card, "pay-1");
    const opened = unsealCard(privateKey, SealedCard.fromBase64(sealed.toBase64()), "pay-1");
    assert.deepEqual(opened.toJsonBytes(), card.toJsonBytes());
    refusesWith(() => unsealCard(privateKey, sealed, "pay-2"), "unseal_failed");
    refusesWith(() => unsealCard(generateKeyPair().privateKey, sealed, "pay-1"), "unseal_failed");
  });

  it("refuses a flipped bit anywhere after the version byte as one error", () => {
    const { privateKey, publicKey } = generateKeyPair();
    const bytes = seal(publicKey, Buffer.from("{}"), Buffer.from("p")).toBytes();
    for (let i = 1; i < bytes.length; i += 7) {
      const tampered = Buffer.from(bytes);
      tampered[i] = (tampered[i] as number) ^ 0x01;
      refusesWith(() => unseal(privateKey, tampered, Buffer.from("p")), "unseal_failed");
    }
  });

  it("refuses an all-zero shared secret (a low-order ephemeral key)", () => {
    const { privateKey } = generateKeyPair();
    const sealed = new SealedCard(Buffer.alloc(32), Buffer.alloc(12), Buffer.alloc(16));
    refusesWith(() => unseal(privateKey, sealed, Buffer.from("p")), "unseal_failed");
    refusesWith(() => seal(Buffer.alloc(32), Buffer.from("x"), Buffer.from("p")), "invalid_key");
  });

  it("checks envelope shape, version and base64", () => {
    refusesWith(() => SealedCard.fromBytes(Buffer.alloc(60)), "malformed");
    refusesWith(() => SealedCard.fromBytes(Buffer.alloc(1086, 1)), "malformed");
    refusesWith(() => SealedCard.fromBytes(Buffer.concat([Buffer.of(2), Buffer.alloc(60)])), "unsupported_version");
    refusesWith(() => SealedCard.fromBase64("AAAA AAA="), "malformed");
    refusesWith(() => SealedCard.fromBase64("AAA"), "malformed");
    refusesWith(() => SealedCard.fromBase64("A".repeat(2000)), "malformed");
  });

  it("loads raw and PEM keys and refuses others", () => {
    const { privateKey, publicKey } = generateKeyPair();
    const raw = privateKeyToRaw(privateKey);
    assert.deepEqual(publicKeyToRaw(loadPrivateKey(raw)), publicKeyToRaw(publicKey));
    const pem = Buffer.from(privateKey.export({ format: "pem", type: "pkcs8" }) as string);
    assert.deepEqual(privateKeyToRaw(loadPrivateKey(pem)), raw);
    assert.deepEqual(publicKeyToRaw(loadPublicKey(publicKeyToRaw(publicKey))), publicKeyToRaw(publicKey));
    refusesWith(() => loadPrivateKey(Buffer.alloc(31)), "invalid_key");
    refusesWith(() => loadPublicKey(Buffer.from("-----BEGIN nonsense")), "invalid_key");
  });

  it("a document that is not a card fails like a wrong key", () => {
    const { privateKey, publicKey } = generateKeyPair();
    for (const doc of ['{"number":"4242"}', '{"number":"4242424242424242","exp_month":1.0,"exp_year":2030,"holder_name":""}', "[]", '{"number":"4242424242424242","exp_month":1,"exp_year":2030,"holder_name":"","extra":1}']) {
      const sealed = seal(publicKey, Buffer.from(doc), Buffer.from("p"));
      refusesWith(() => unsealCard(privateKey, sealed, "p"), "unseal_failed");
    }
    const noCvc = seal(publicKey, Buffer.from('{"exp_month":1,"exp_year":2030,"holder_name":"","number":"4000000000000002"}'), Buffer.from("p"));
    assert.equal(unsealCard(privateKey, noCvc, "p").cvc, null);
  });
});

describe("Card", () => {
  it("writes the sealed document as payrail does", () => {
    assert.equal(
      card.toJsonBytes().toString("utf8"),
      '{"cvc":"123","exp_month":12,"exp_year":2030,"holder_name":"Jane Müller","number":"4242424242424242"}',
    );
  });

  it("never shows the number, CVC or name in strings, JSON or inspect", () => {
    for (const shown of [String(card), `${card}`, JSON.stringify(card), inspect(card), inspect({ nested: card })]) {
      assert.ok(!shown.includes("4242424242424242"), shown);
      assert.ok(!shown.includes("123\""), shown);
      assert.ok(!shown.includes("Müller"), shown);
      assert.ok(shown.includes("424242******4242"), shown);
    }
  });

  it("checks its fields without echoing them", () => {
    assert.throws(() => new Card({ number: "42", expMonth: 1, expYear: 2030 }), (e: Error) => !e.message.includes("42 "));
    assert.throws(() => new Card({ number: "4242424242424242", expMonth: 13, expYear: 2030 }), RangeError);
    assert.throws(() => new Card({ number: "4242424242424242", expMonth: 1, expYear: 2030, cvc: "12" }), RangeError);
  });
});
