/** The signature header grammar and limits, signing with several secrets, and a secret
 * that never shows itself. */

import assert from "node:assert/strict";
import { inspect } from "node:util";
import { describe, it } from "node:test";

import { SignatureError } from "../src/errors.js";
import { CallbackSecret, SignatureVerifier, parseHeader, sign, signWithSecrets, verify } from "../src/signing.js";

const secret = Buffer.from("payrail test vector secret no. 1");
const other = Buffer.from("payrail test vector secret no. 2");
const payload = Buffer.from('{"event_id":"e"}');
const digest = "a".repeat(64);

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof SignatureError);
    return error.reason;
  }
  return "accepted";
}

describe("signing", () => {
  it("signs with lowercase hex and verifies with any active secret", () => {
    const header = signWithSecrets(payload, [secret, other], 1_700_000_000);
    assert.match(header, /^t=1700000000,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
    verify(payload, header, [other], 1_700_000_000);
    verify(payload, header.toUpperCase().replace("T=", "t=").replace(/V1=/g, "v1="), [secret], 1_700_000_000);
    assert.equal(reason(() => verify(payload, sign(payload, secret, 1_700_000_000), [other], 1_700_000_000)), "mismatch");
  });

  it("accepts exactly 300 s either way, not 301", () => {
    const header = sign(payload, secret, 1_000_000);
    assert.equal(reason(() => verify(payload, header, [secret], 1_000_300)), "accepted");
    assert.equal(reason(() => verify(payload, header, [secret], 999_700)), "accepted");
    assert.equal(reason(() => verify(payload, header, [secret], 1_000_301)), "stale");
    assert.equal(reason(() => verify(payload, header, [secret], 999_699)), "stale");
  });

  it("refuses every break of the grammar", () => {
    const cases: [string | undefined, string][] = [
      [undefined, "missing"],
      ["", "missing"],
      [`t=1`, "no_signature"],
      [`t=1,v2=${digest}`, "no_signature"],
      [`v1=${digest}`, "malformed"],
      [`t=1,t=2,v1=${digest}`, "malformed"],
      [`t=01,v1=${digest}`, "malformed"],
      [`t=-1,v1=${digest}`, "malformed"],
      [`t=1234567890123,v1=${digest}`, "malformed"],
      [`t=1, v1=${digest}`, "malformed"],
      [`t=1,,v1=${digest}`, "malformed"],
      [`t=1,v1=${digest},`, "malformed"],
      [`t=1,v1=${digest.slice(1)}`, "malformed"],
      [`t=1,V1=${digest}`, "malformed"],
      [`t=1,v1=${"g".repeat(64)}`, "malformed"],
      [`t=1,${Array(9).fill(`v1=${digest}`).join(",")}`, "malformed"],
      [`t=1,v1=${digest},${Array(15).fill("x=1").join(",")}`, "malformed"],
      [`t=1,v1=${digest},x=${"é"}`, "malformed"],
      [`t=1,v1=${digest},x=${"y".repeat(1000)}`, "malformed"],
    ];
    for (const [header, expected] of cases) {
      assert.equal(reason(() => parseHeader(header)), expected, String(header));
    }
    const parsed = parseHeader(`v2=x,t=5,v1=${digest},v1=${digest}`);
    assert.equal(parsed.timestamp, 5);
    assert.equal(parsed.signatures.length, 2);
  });

  it("needs a secret to verify with", () => {
    assert.equal(reason(() => new SignatureVerifier().verify(payload, sign(payload, secret, 1), [], 1)), "no_secret");
  });
});

describe("CallbackSecret", () => {
  it("is at least 32 bytes, read from base64, compared in constant time", () => {
    const generated = CallbackSecret.generate();
    assert.ok(CallbackSecret.fromBase64(` ${generated.toBase64()}\n`).equals(generated));
    assert.ok(!generated.equals(CallbackSecret.generate()));
    assert.throws(() => new CallbackSecret(Buffer.alloc(31)), RangeError);
    assert.throws(() => CallbackSecret.fromBase64("not base64!"), RangeError);
  });

  it("never shows its bytes", () => {
    const s = new CallbackSecret(secret);
    for (const shown of [String(s), JSON.stringify({ s }), inspect(s)]) {
      assert.ok(!shown.includes("payrail test") && !shown.includes(secret.toString("base64")), shown);
    }
    assert.equal(sign(payload, s, 7), sign(payload, secret, 7));
  });
});
