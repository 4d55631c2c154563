/** JSON log lines: one object per line, card numbers masked, request ids bound. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Logger, parseLevel, redact, withRequestId } from "../src/log.js";

describe("logging", () => {
  it("masks card-number-shaped digit runs but not UUIDs", () => {
    assert.equal(redact("card 4242424242424242 end"), "card [redacted-pan ...4242] end");
    assert.equal(redact("4242 4242 4242 4242"), "[redacted-pan ...4242]");
    assert.equal(redact("4242-4242-4242-4242"), "[redacted-pan ...4242]");
    const uuid = "6f1c2a4e-0b1d-4c55-9a2e-3f4b5c6d7e8f";
    assert.equal(redact(uuid), uuid);
    assert.equal(redact("12345678901"), "12345678901"); // 11 digits: not a PAN
  });

  it("writes one redacted JSON object per line with the bound request id", () => {
    const out: string[] = [];
    const log = new Logger("svc", "name", "info", { write: (line: string) => out.push(line) });
    log.debug("hidden");
    withRequestId("req-1", () => log.info("hello", { pan: "4000000000000002", n: 3, big: 5n, error: new Error("4242424242424242") }));
    assert.equal(out.length, 1);
    assert.ok(out[0]!.endsWith("\n"));
    const line = JSON.parse(out[0]!);
    assert.equal(line.msg, "hello");
    assert.equal(line.request_id, "req-1");
    assert.equal(line.pan, "[redacted-pan ...0002]");
    assert.equal(line.n, 3);
    assert.equal(line.big, "5");
    assert.equal(line.error, "Error");
    assert.equal(line.level, "info");
  });

  it("reads payrail's level names", () => {
    assert.equal(parseLevel("WARNING"), "warning");
    assert.equal(parseLevel("DEBUG"), "debug");
    assert.equal(parseLevel("nonsense"), "info");
  });
});
