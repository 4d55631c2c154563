/**
 * GatewayWorker's handling of fetched records (everything but the Kafka loop, which the
 * end-to-end test covers), against the in-memory CallbackService of reporting.test.ts.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Code } from "@connectrpc/connect";
import { ResultDisposition } from "@payrail/contracts/callbacks/v1/callbacks";

import { JSON_FORMAT } from "../src/formats/index.js";
import { Logger } from "../src/log.js";
import type { GatewayRequest } from "../src/model.js";
import { Card, generateKeyPair, sealCard } from "../src/sealing.js";
import { GatewayWorker, approve, decline, requestIdFrom, type Handler, type Outcome } from "../src/worker.js";
import { client, fakePayrail } from "./fake-payrail.js";
import { request } from "./helpers.js";

const keys = generateKeyPair();
const CARD = new Card({ number: "4000000000000002", expMonth: 7, expYear: 2033 });

function lines(): { logger: Logger; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const logger = new Logger("test", "worker", "debug", { write: (line: string) => records.push(JSON.parse(line)) });
  return { logger, records };
}

function record(requestId: string, paymentId: string, withCard = true, headerId?: string) {
  const sealed = withCard ? sealCard(keys.publicKey, CARD, paymentId) : null;
  const value = Buffer.from(JSON_FORMAT.encodeRequest(request({ requestId, paymentId, sealedCard: sealed })));
  return { value, headers: headerId === undefined ? {} : { "x-request-id": Buffer.from(headerId) } };
}

function worker(handler: Handler, payrail = fakePayrail(), logger = lines().logger) {
  return new GatewayWorker({
    gatewayId: "gw",
    wireFormat: JSON_FORMAT,
    privateKey: keys.privateKey,
    callbacks: client(payrail.transport),
    handler,
    kafka: { brokers: ["127.0.0.1:1"] },
    lingerMs: 10,
    batchMax: 50,
    logger,
  });
}

describe("GatewayWorker", () => {
  it("opens the card, asks the handler, reports <request_id>/result in one batch with request ids", async () => {
    const payrail = fakePayrail();
    const seen: string[] = [];
    const w = worker(async (req: GatewayRequest, card: Card | null) => {
      seen.push(`${req.paymentId}:${card?.number ?? "none"}`);
      return card === null ? approve("wallet") : decline("card_declined", "no");
    }, payrail);
    await w.handleRecords([record("r-1", "p-1", true, "trace-1"), record("r-2", "p-2", false, "trace-2"), record("r-3", "p-3", false)]);
    assert.deepEqual(seen.sort(), ["p-1:4000000000000002", "p-2:none", "p-3:none"]);
    assert.equal(payrail.calls.length, 1);
    const call = payrail.calls[0]!;
    assert.deepEqual(call.results.map((r) => [r.eventId, r.outcome]), [["r-1/result", "DECLINED"], ["r-2/result", "APPROVED"], ["r-3/result", "APPROVED"]]);
    assert.deepEqual(call.requestIds, ["trace-1", "trace-2", ""]);
    assert.equal(call.headerRequestId, "trace-1");
  });

  it("never charges a payment twice: a redelivery or re-dispatch reports the kept result", async () => {
    const payrail = fakePayrail();
    let charges = 0;
    const outcomes: Outcome[] = [approve("first"), decline("card_declined")];
    const w = worker(async () => outcomes[charges++] ?? null, payrail);
    // Two records of one payment at once, then a re-dispatch later.
    await w.handleRecords([record("r-1", "p-1"), record("r-1", "p-1")]);
    await w.handleRecords([record("r-9", "p-1")]);
    assert.equal(charges, 1);
    const reported = payrail.calls.flatMap((c) => c.results);
    assert.deepEqual(new Set(reported.map((r) => `${r.eventId} ${r.outcome} ${r.gatewayReference}`)), new Set(["r-1/result APPROVED first"]));
  });

  it("drops undecodable requests, declines unreadable cards, answers nothing for null", async () => {
    const payrail = fakePayrail();
    const { logger, records } = lines();
    const w = worker(async () => null, payrail, logger);
    const foreign = sealCard(generateKeyPair().publicKey, CARD, "p-2");
    const unreadable = Buffer.from(JSON_FORMAT.encodeRequest(request({ requestId: "r-2", paymentId: "p-2", sealedCard: foreign })));
    await w.handleRecords([{ value: Buffer.from("not json") }, { value: unreadable }, record("r-3", "p-3")]);
    const reported = payrail.calls.flatMap((c) => c.results);
    assert.deepEqual(reported.map((r) => [r.paymentId, r.failureCode]), [["p-2", "card_unreadable"]]);
    assert.ok(records.some((r) => r.msg === "undecodable request dropped" && r.reason === "malformed"));
    // Nothing logged carries the card number.
    assert.ok(!JSON.stringify(records).includes("4000000000000002"));
  });

  it("a handler that throws leaves the records to be read again", async () => {
    const w = worker(async () => {
      throw new Error("provider down");
    });
    await assert.rejects(w.handleRecords([record("r-1", "p-1")]), /provider down/);
  });

  it("logs and drops results payrail refuses as final", async () => {
    const { logger, records } = lines();
    const notFound = fakePayrail([], new Map([["r-1/result", ResultDisposition.NOT_FOUND]]));
    await worker(async () => approve(), notFound, logger).handleRecords([record("r-1", "p-1")]);
    const unauthenticated = fakePayrail([Code.Unauthenticated]);
    await worker(async () => approve(), unauthenticated, logger).handleRecords([record("r-2", "p-2")]);
    assert.deepEqual(
      records.filter((r) => r.msg === "result not accepted").map((r) => [r.payment_id, r.code]),
      [["p-1", "NOT_FOUND"], ["p-2", "UNAUTHENTICATED"]],
    );
  });

  it("reads payrail's request id only when it is well formed", () => {
    assert.equal(requestIdFrom({ "x-request-id": Buffer.from("abc-123") }), "abc-123");
    assert.equal(requestIdFrom({ "x-request-id": "bad id" }), null);
    assert.equal(requestIdFrom({ "x-request-id": "x".repeat(65) }), null);
    assert.equal(requestIdFrom(undefined), null);
  });

  it("is not waiting or consuming before it runs", () => {
    const w = worker(async () => null);
    assert.equal(w.waiting, false);
    assert.equal(w.consuming, false);
  });
});
