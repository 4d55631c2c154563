/** Every format's field rules and limits, as payrail's reference SDK has them. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { FormatError } from "../src/errors.js";
import { getFormat, JSON_FORMAT, PROTOBUF_FORMAT, SOAP_FORMAT } from "../src/formats/index.js";
import { BATCH_RESULTS_MAX, gatewayMerchant, gatewayRequest, gatewayResult, maskedCard } from "../src/model.js";
import { request, result, utf8 } from "./helpers.js";

function refuses(fn: () => unknown, reason: string, field?: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof FormatError, String(error));
    assert.equal(error.reason, reason);
    if (field !== undefined) assert.equal(error.field, field);
    return true;
  });
}

const RESULT_JSON = {
  event_id: "evt_1",
  payment_id: "p-1",
  outcome: "APPROVED",
  failure_code: "",
  failure_message: "",
  gateway_reference: "ref",
  occur_time: 1700000000,
};

function jsonResult(patch: Record<string, unknown>, raw?: string): Buffer {
  return utf8(raw ?? JSON.stringify({ ...RESULT_JSON, ...patch }));
}

describe("field rules", () => {
  it("ids are 1 to 128 visible ASCII characters", () => {
    refuses(() => result({ eventId: "" }), "missing_field", "event_id");
    refuses(() => result({ eventId: "a b" }), "invalid_field", "event_id");
    refuses(() => result({ eventId: "x".repeat(129) }), "invalid_field", "event_id");
    assert.equal(result({ eventId: "x".repeat(128) }).eventId.length, 128);
    refuses(() => result({ paymentId: "é" }), "invalid_field", "payment_id");
  });

  it("approved carries no failure; declined needs a code", () => {
    refuses(() => result({ failureCode: "card_declined" }), "invalid_field", "failure_code");
    refuses(() => result({ failureMessage: "no" }), "invalid_field", "failure_code");
    refuses(() => result({ outcome: "DECLINED" }), "missing_field", "failure_code");
    refuses(() => result({ outcome: "MAYBE" }), "invalid_field", "outcome");
    refuses(() => result({ outcome: "DECLINED", failureCode: "bad code" }), "invalid_field", "failure_code");
    assert.equal(result({ outcome: "DECLINED", failureCode: "card_declined" }).outcome, "DECLINED");
  });

  it("text counts code points and refuses controls, lone surrogates and non-characters", () => {
    const emoji = "😀".repeat(500); // 1000 UTF-16 units, 500 code points
    assert.equal(result({ outcome: "DECLINED", failureCode: "x", failureMessage: emoji }).failureMessage, emoji);
    refuses(() => result({ outcome: "DECLINED", failureCode: "x", failureMessage: emoji + "a" }), "invalid_field", "failure_message");
    assert.ok(result({ outcome: "DECLINED", failureCode: "x", failureMessage: "a\nb\tc" }));
    for (const bad of ["a\rb", "\u0000", "\u007f", "\u0085", "\ud800", "\uffff", "\ufffe"]) {
      refuses(() => result({ outcome: "DECLINED", failureCode: "x", failureMessage: bad }), "invalid_field", "failure_message");
    }
    refuses(() => result({ gatewayReference: "a\nb" }), "invalid_field", "gateway_reference");
  });

  it("integers are integers within their range", () => {
    refuses(() => result({ occurTime: -1 }), "invalid_field", "occur_time");
    refuses(() => result({ occurTime: 253_402_300_800 }), "invalid_field", "occur_time");
    refuses(() => result({ occurTime: 1.5 }), "invalid_field", "occur_time");
    refuses(() => result({ occurTime: "1" }), "invalid_field", "occur_time");
    refuses(() => result({ occurTime: true }), "invalid_field", "occur_time");
  });

  it("requests: amounts are int64, attempts int32, currencies ISO codes", () => {
    const base = {
      requestId: "r",
      paymentId: "p",
      attempt: 1,
      kind: "DEPOSIT",
      amountMinor: 2n ** 63n - 1n,
      currencyCode: "AUD",
      callbackDeadline: 0,
    };
    assert.equal(gatewayRequest(base).amountMinor, 9_223_372_036_854_775_807n);
    refuses(() => gatewayRequest({ ...base, amountMinor: 2n ** 63n }), "invalid_field", "amount_minor");
    refuses(() => gatewayRequest({ ...base, amountMinor: 0n }), "invalid_field", "amount_minor");
    refuses(() => gatewayRequest({ ...base, attempt: 0 }), "invalid_field", "attempt");
    refuses(() => gatewayRequest({ ...base, attempt: 2 ** 31 }), "invalid_field", "attempt");
    refuses(() => gatewayRequest({ ...base, kind: "REFUND" }), "invalid_field", "kind");
    refuses(() => gatewayRequest({ ...base, currencyCode: "aud" }), "invalid_field", "currency_code");
    refuses(() => gatewayRequest({ ...base, description: "x".repeat(501) }), "invalid_field", "description");
  });

  it("a masked card cannot hold a full card number", () => {
    assert.ok(maskedCard({ brand: "VISA", maskedNumber: "424242******4242" }));
    assert.ok(maskedCard({ brand: "UNSPECIFIED", maskedNumber: "" }));
    refuses(() => maskedCard({ brand: "VISA", maskedNumber: "4242424242424242" }), "invalid_field", "card.masked_number");
    refuses(() => maskedCard({ brand: "visa", maskedNumber: "" }), "invalid_field", "card.brand");
  });

  it("merchant codes have their shapes", () => {
    assert.ok(gatewayMerchant({ categoryCode: "5812", countryCode: "CH" }));
    refuses(() => gatewayMerchant({ categoryCode: "581" }), "invalid_field", "merchant.category_code");
    refuses(() => gatewayMerchant({ countryCode: "ch" }), "invalid_field", "merchant.country_code");
    refuses(() => gatewayMerchant({ name: "x".repeat(101) }), "invalid_field", "merchant.name");
  });
});

describe("json", () => {
  it("round-trips requests and results with payrail's canonical bytes", () => {
    const r = result();
    assert.deepEqual(JSON_FORMAT.decodeResult(JSON_FORMAT.encodeResult(r)), r);
    assert.equal(
      Buffer.from(JSON_FORMAT.encodeResult(r)).toString(),
      '{"event_id":"evt_1","failure_code":"","failure_message":"","gateway_reference":"ref-1","occur_time":1700000000,"outcome":"APPROVED","payment_id":"p-1"}',
    );
    const req = request();
    assert.deepEqual(JSON_FORMAT.decodeRequest(JSON_FORMAT.encodeRequest(req)), req);
  });

  it("is strict about types, duplicates and numbers", () => {
    refuses(() => JSON_FORMAT.decodeResult(jsonResult({ occur_time: 1700000000.0 }, '{"event_id":"e","payment_id":"p","outcome":"APPROVED","occur_time":1.0}')), "invalid_field", "occur_time");
    refuses(() => JSON_FORMAT.decodeResult(jsonResult({ occur_time: "1700000000" })), "invalid_field", "occur_time");
    refuses(() => JSON_FORMAT.decodeResult(jsonResult({ occur_time: true })), "invalid_field", "occur_time");
    refuses(() => JSON_FORMAT.decodeResult(jsonResult({}, '{"event_id":"a","event_id":"b","payment_id":"p","outcome":"APPROVED","occur_time":1}')), "malformed");
    refuses(() => JSON_FORMAT.decodeResult(jsonResult({}, '{"event_id":"a","payment_id":"p","outcome":"APPROVED","occur_time":NaN}')), "malformed");
    refuses(() => JSON_FORMAT.decodeResult(jsonResult({}, '\ufeff{"event_id":"a"}')), "malformed");
    refuses(() => JSON_FORMAT.decodeResult(Buffer.from([0x7b, 0xff, 0x7d])), "malformed");
    refuses(() => JSON_FORMAT.decodeResult(jsonResult({}, "[]")), "malformed");
    refuses(() => JSON_FORMAT.decodeResult(jsonResult({ event_id: undefined })), "missing_field", "event_id");
    refuses(() => JSON_FORMAT.decodeResult(jsonResult({ failure_code: null })), "invalid_field", "failure_code");
    assert.equal(JSON_FORMAT.decodeResult(jsonResult({ failure_code: undefined, gateway_reference: undefined })).gatewayReference, "");
    refuses(() => JSON_FORMAT.decodeResult(jsonResult({}, "[".repeat(600) + "]".repeat(600))), "malformed");
  });

  it("reads an int64 amount exactly, ignores unknown keys, treats absent texts as empty", () => {
    const doc = JSON.parse(Buffer.from(JSON_FORMAT.encodeRequest(request())).toString());
    doc.new_field = { anything: [1, 2] };
    delete doc.description;
    const text = JSON.stringify(doc).replace('"amount_minor":1000', '"amount_minor":9223372036854775807');
    const decoded = JSON_FORMAT.decodeRequest(utf8(text));
    assert.equal(decoded.amountMinor, 9_223_372_036_854_775_807n);
    assert.equal(decoded.description, "");
    refuses(() => JSON_FORMAT.decodeRequest(utf8(text.replace('"currency_code"', '"description":null,"currency_code"'))), "invalid_field", "description");
    refuses(() => JSON_FORMAT.decodeRequest(utf8(text.replace("9223372036854775807", "9223372036854775808"))), "invalid_field", "amount_minor");
  });

  it("refuses oversized payloads before parsing", () => {
    refuses(() => JSON_FORMAT.decodeResult(Buffer.alloc(16_385, 0x20)), "oversized");
  });

  it("escapes what Python's encoder escapes", () => {
    const r = result({ outcome: "DECLINED", failureCode: "x", failureMessage: 'quote " back \\ tab \t nl \n €' });
    assert.equal(
      JSON.parse(Buffer.from(JSON_FORMAT.encodeResult(r)).toString()).failure_message,
      'quote " back \\ tab \t nl \n €',
    );
    assert.ok(Buffer.from(JSON_FORMAT.encodeResult(r)).toString().includes('"quote \\" back \\\\ tab \\t nl \\n €"'));
  });
});

describe("batches", () => {
  for (const format of [JSON_FORMAT, SOAP_FORMAT, PROTOBUF_FORMAT]) {
    it(`${format.name}: 1 to 500 results round-trip in order`, () => {
      const results = [result({ eventId: "a" }), result({ eventId: "b", outcome: "DECLINED", failureCode: "card_declined" })];
      assert.deepEqual(format.decodeResults(format.encodeResults(results)), results);
      refuses(() => format.encodeResults([]), "invalid_field", "results");
      const many = Array.from({ length: BATCH_RESULTS_MAX + 1 }, (_, i) => result({ eventId: `e${i}` }));
      refuses(() => format.encodeResults(many), "invalid_field", "results");
      assert.equal(format.decodeResults(format.encodeResults(many.slice(1))).length, BATCH_RESULTS_MAX);
    });
  }

  it("a batch over the byte bound is oversized", () => {
    const long = "x".repeat(128);
    const big = Array.from({ length: 500 }, (_, i) =>
      result({ eventId: `${i}`.padEnd(128, "e"), paymentId: long, outcome: "DECLINED", failureCode: "c", failureMessage: "€".repeat(500), gatewayReference: long }),
    );
    refuses(() => SOAP_FORMAT.encodeResults(big), "oversized");
  });
});

describe("soap", () => {
  const envelope = (body: string, head = "<?xml version='1.0' encoding='utf-8'?>\n") =>
    utf8(`${head}<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pr="urn:payrail:gateway:v1"><soap:Body>${body}</soap:Body></soap:Envelope>`);
  const fields = "<pr:event_id>e</pr:event_id><pr:payment_id>p</pr:payment_id><pr:outcome>APPROVED</pr:outcome><pr:occur_time>7</pr:occur_time>";

  it("decodes any prefix bound to payrail's namespace, entities, CDATA and comments", () => {
    const doc = utf8(
      `<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><GatewayResult xmlns="urn:payrail:gateway:v1">` +
        `<event_id>e</event_id><payment_id>p</payment_id><gateway_reference>a&amp;b&#233;&#x41;<!-- c --><![CDATA[<x>]]></gateway_reference>` +
        `<outcome>APPROVED</outcome><occur_time>7</occur_time><ext xmlns="urn:other">ignored</ext></GatewayResult></e:Body></e:Envelope>`,
    );
    const decoded = SOAP_FORMAT.decodeResult(doc);
    assert.equal(decoded.gatewayReference, "a&béA<x>");
    assert.equal(decoded.occurTime, 7);
  });

  it("refuses DTDs, entity declarations and processing instructions as forbidden markup", () => {
    refuses(() => SOAP_FORMAT.decodeResult(envelope(`<pr:GatewayResult>${fields}</pr:GatewayResult>`, "<!DOCTYPE x>")), "forbidden_markup");
    refuses(() => SOAP_FORMAT.decodeResult(envelope(`<pr:GatewayResult>${fields}<?pi x?></pr:GatewayResult>`)), "forbidden_markup");
    refuses(() => SOAP_FORMAT.decodeResult(envelope(`<pr:GatewayResult>${fields}</pr:GatewayResult>`, '<?xml-stylesheet href="x"?>')), "forbidden_markup");
    // Inside a comment or CDATA it is text, not markup.
    assert.ok(SOAP_FORMAT.decodeResult(envelope(`<pr:GatewayResult>${fields}<!-- <!DOCTYPE x> --></pr:GatewayResult>`)));
  });

  it("refuses what expat refuses", () => {
    const bad = [
      `<pr:GatewayResult>${fields}<pr:x>&undefined;</pr:x></pr:GatewayResult>`,
      `<pr:GatewayResult>${fields}</pr:GatewayResult><pr:GatewayResult/>`,
      `<pr:GatewayResult>${fields}<q:x/></pr:GatewayResult>`,
      `<pr:GatewayResult>${fields}<pr:a></pr:b></pr:GatewayResult>`,
      `<pr:GatewayResult>${fields}&#0;</pr:GatewayResult>`,
      `<pr:GatewayResult a="1" a="2">${fields}</pr:GatewayResult>`,
    ];
    for (const body of bad) refuses(() => SOAP_FORMAT.decodeResult(envelope(body)), "malformed");
    refuses(() => SOAP_FORMAT.decodeResult(envelope(`<pr:GatewayResult>${fields}</pr:GatewayResult>`, "<?xml version='1.0' encoding='latin-1'?>")), "malformed");
    refuses(() => SOAP_FORMAT.decodeResult(utf8("<a/><b/>")), "malformed");
  });

  it("checks the envelope, duplicates, nested fields and integers", () => {
    refuses(() => SOAP_FORMAT.decodeResult(envelope(`<pr:GatewayResult>${fields}<pr:event_id>x</pr:event_id></pr:GatewayResult>`)), "malformed", "event_id");
    refuses(() => SOAP_FORMAT.decodeResult(envelope(`<pr:GatewayRequest>${fields}</pr:GatewayRequest>`)), "malformed", "GatewayResult");
    refuses(() => SOAP_FORMAT.decodeResult(envelope(fields.replace(">7<", ">07<").replace(/^/, "<pr:GatewayResult>") + "</pr:GatewayResult>")), "invalid_field", "occur_time");
    refuses(() => SOAP_FORMAT.decodeResult(envelope(fields.replace("<pr:event_id>e</pr:event_id>", "<pr:event_id><pr:x/></pr:event_id>").replace(/^/, "<pr:GatewayResult>") + "</pr:GatewayResult>")), "invalid_field", "event_id");
    const header = utf8(
      `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pr="urn:payrail:gateway:v1"><soap:Header><h soap:mustUnderstand="1"/></soap:Header><soap:Body><pr:GatewayResult>${fields}</pr:GatewayResult></soap:Body></soap:Envelope>`,
    );
    refuses(() => SOAP_FORMAT.decodeResult(header), "malformed", "Header");
    refuses(() => SOAP_FORMAT.decodeResults(envelope(`<pr:GatewayResultBatch><pr:Other/></pr:GatewayResultBatch>`)), "malformed", "results");
  });

  it("escapes text as ElementTree does and keeps white space", () => {
    const r = result({ outcome: "DECLINED", failureCode: "x", failureMessage: ' <a> & "b" \n ' });
    const text = Buffer.from(SOAP_FORMAT.encodeResult(r)).toString();
    assert.ok(text.includes('<pr:failure_message> &lt;a&gt; &amp; "b" \n </pr:failure_message>'));
    assert.ok(text.includes("<pr:gateway_reference>ref-1</pr:gateway_reference>"));
    assert.equal(SOAP_FORMAT.decodeResult(SOAP_FORMAT.encodeResult(r)).failureMessage, ' <a> & "b" \n ');
  });
});

describe("protobuf", () => {
  it("results are protobuf, requests JSON", () => {
    const r = result();
    assert.deepEqual(PROTOBUF_FORMAT.decodeResult(PROTOBUF_FORMAT.encodeResult(r)), r);
    assert.deepEqual(PROTOBUF_FORMAT.encodeRequest(request()), JSON_FORMAT.encodeRequest(request()));
  });

  it("refuses a missing timestamp, an unknown outcome and invalid UTF-8", () => {
    const encoded = Buffer.from(PROTOBUF_FORMAT.encodeResult(result({ gatewayReference: "" })));
    // Drop field 7 (occur_time, tag 0x3a) at the end.
    const at = encoded.lastIndexOf(0x3a);
    refuses(() => PROTOBUF_FORMAT.decodeResult(encoded.subarray(0, at)), "missing_field", "occur_time");
    const unspecified = Buffer.from(encoded);
    unspecified[unspecified.indexOf(0x18) + 1] = 0; // outcome = OUTCOME_UNSPECIFIED
    refuses(() => PROTOBUF_FORMAT.decodeResult(unspecified), "invalid_field", "outcome");
    const badUtf8 = Buffer.from([0x0a, 0x02, 0xc3, 0x28]);
    refuses(() => PROTOBUF_FORMAT.decodeResult(badUtf8), "malformed");
  });

  it("knows only its three formats", () => {
    refuses(() => getFormat("xml"), "unknown_format");
  });

  it("results without gatewayResult checks cannot be built", () => {
    refuses(() => gatewayResult({ eventId: "e", paymentId: "p", outcome: "APPROVED", occurTime: undefined }), "invalid_field", "occur_time");
  });
});
