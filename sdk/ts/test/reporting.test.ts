/** CallbackClient and ResultBatcher against the in-memory CallbackService. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";
import { ResultDisposition } from "@payrail/contracts/callbacks/v1/callbacks";

import { ResultBatcher } from "../src/reporting.js";
import { client, fakePayrail, quiet } from "./fake-payrail.js";
import { result } from "./helpers.js";

describe("CallbackClient", () => {
  it("reports one signed result with the request id", async () => {
    const { transport, calls } = fakePayrail();
    const reported = await client(transport).report(result(), "req-1");
    assert.equal(reported.disposition, "APPLIED");
    assert.deepEqual(calls.map((c) => [c.rpc, c.headerRequestId]), [["one", "req-1"]]);
  });

  it("retries unavailable-like codes until payrail answers, re-signing each try", async () => {
    const { transport, calls } = fakePayrail([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted, Code.Canceled, Code.Unavailable, Code.Unavailable]);
    const c = client(transport);
    const reported = await c.report(result());
    assert.equal(reported.disposition, "APPLIED");
    assert.equal(calls.length, 1);
    assert.equal(c.waiting, false);
  });

  it("gives up on unknown/internal after the bound, at once on final codes", async () => {
    const unexplained = fakePayrail([Code.Internal, Code.Unknown, Code.Internal, null]);
    await assert.rejects(client(unexplained.transport).report(result()), (e: unknown) => e instanceof ConnectError && e.code === Code.Internal);
    const refused = fakePayrail([Code.Unauthenticated, null]);
    await assert.rejects(client(refused.transport).report(result()), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated);
    assert.equal(refused.calls.length, 0);
  });

  it("answers NOT_FOUND and FAILED_PRECONDITION as dispositions", async () => {
    const { transport } = fakePayrail([], new Map([["a", ResultDisposition.NOT_FOUND], ["b", ResultDisposition.CONFLICT]]));
    assert.equal((await client(transport).report(result({ eventId: "a" }))).disposition, "NOT_FOUND");
    assert.equal((await client(transport).report(result({ eventId: "b" }))).disposition, "CONFLICT");
  });

  it("stops retrying when its signal aborts", async () => {
    const { transport } = fakePayrail(Array(1000).fill(Code.Unavailable));
    const abort = new AbortController();
    const c = client(transport, abort.signal);
    const pending = c.report(result());
    setTimeout(() => abort.abort(), 30);
    await assert.rejects(pending);
  });

  it("reports many in one call with request ids, splitting at 500 and halving oversized batches", async () => {
    const { transport, calls } = fakePayrail();
    const results = Array.from({ length: 3 }, (_, i) => result({ eventId: `e${i}` }));
    const replies = await client(transport).reportMany(results, [null, "r-1", "r-2"]);
    assert.deepEqual(replies.map((r) => r.eventId), ["e0", "e1", "e2"]);
    assert.deepEqual(calls[0]?.requestIds, ["", "r-1", "r-2"]);
    assert.equal(calls[0]?.headerRequestId, "r-1");

    const many = fakePayrail();
    await client(many.transport).reportMany(Array.from({ length: 501 }, (_, i) => result({ eventId: `e${i}` })));
    assert.deepEqual(many.calls.map((c) => c.results.length), [500, 1]);

    const big = fakePayrail();
    const long = "x".repeat(128);
    const heavy = Array.from({ length: 500 }, (_, i) =>
      result({ eventId: `e${i}`, paymentId: long, outcome: "DECLINED", failureCode: "c", failureMessage: "\u{10348}".repeat(500), gatewayReference: long }),
    );
    const replies2 = await client(big.transport).reportMany(heavy);
    assert.equal(replies2.length, 500);
    assert.deepEqual(big.calls.map((c) => c.results.length), [250, 250]);
  });
});

describe("ResultBatcher", () => {
  it("gathers results ready within linger_ms into one call and answers each", async () => {
    const { transport, calls } = fakePayrail([], new Map([["e1", ResultDisposition.DUPLICATE]]));
    const batcher = new ResultBatcher(client(transport), { lingerMs: 20, batchMax: 10, logger: quiet });
    const replies = await Promise.all([0, 1, 2].map((i) => batcher.submit(result({ eventId: `e${i}` }), `r${i}`)));
    assert.deepEqual(replies.map((r) => r.disposition), ["APPLIED", "DUPLICATE", "APPLIED"]);
    assert.deepEqual(calls.map((c) => [c.rpc, c.results.length]), [["many", 3]]);
  });

  it("sends at batch_max without waiting", async () => {
    const { transport, calls } = fakePayrail();
    const batcher = new ResultBatcher(client(transport), { lingerMs: 1000, batchMax: 2, logger: quiet });
    const started = Date.now();
    await Promise.all([0, 1].map((i) => batcher.submit(result({ eventId: `e${i}` }))));
    assert.ok(Date.now() - started < 500);
    assert.deepEqual(calls.map((c) => c.results.length), [2]);
  });

  it("reports one by one after INTERNAL on a batch, and for good after UNIMPLEMENTED", async () => {
    const internal = fakePayrail([Code.Internal, Code.Internal, Code.Internal]);
    const batcher = new ResultBatcher(client(internal.transport), { lingerMs: 5, batchMax: 10, logger: quiet });
    await Promise.all([0, 1].map((i) => batcher.submit(result({ eventId: `e${i}` }))));
    assert.deepEqual(internal.calls.map((c) => c.rpc), ["one", "one"]);

    const old = fakePayrail([Code.Unimplemented]);
    const b2 = new ResultBatcher(client(old.transport), { lingerMs: 5, batchMax: 10, logger: quiet });
    await Promise.all([0, 1].map((i) => b2.submit(result({ eventId: `e${i}` }))));
    await Promise.all([2, 3].map((i) => b2.submit(result({ eventId: `e${i}` }))));
    assert.deepEqual(old.calls.map((c) => c.rpc), ["one", "one", "one", "one"]);
  });

  it("fails every submitter with a final error of the call", async () => {
    const { transport } = fakePayrail([Code.Unauthenticated]);
    const batcher = new ResultBatcher(client(transport), { lingerMs: 5, batchMax: 10, logger: quiet });
    const outcomes = await Promise.allSettled([0, 1].map((i) => batcher.submit(result({ eventId: `e${i}` }))));
    assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected"]);
  });

  it("checks its limits", () => {
    const { transport } = fakePayrail();
    assert.throws(() => new ResultBatcher(client(transport), { batchMax: 501 }), RangeError);
    assert.throws(() => new ResultBatcher(client(transport), { lingerMs: -1 }), RangeError);
  });
});
