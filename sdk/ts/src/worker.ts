/**
 * The network half of the SDK: {@link GatewayWorker} runs a gateway.
 *
 * It consumes `gateway.<id>.requests` in consumer group `<id>` (kafkajs), decodes each
 * request in the gateway's wire format, opens the sealed card with the gateway's
 * private key, calls your {@link Handler} and reports its outcome, signed, through a
 * {@link ResultBatcher} (results ready within `lingerMs` of each other share one
 * `ReportResults` call). A partition's offsets are committed only after every result
 * of its fetched records was accepted (or the handler chose not to answer), so a crash
 * re-delivers the requests; results carry `event_id = <request_id>/result`, so payrail
 * applies a re-delivered result once, whatever batch it arrives in.
 *
 * A payment is never charged twice and never reported with two outcomes: the result of
 * every recently answered payment is kept (`answeredMax`), and a redelivery or a
 * re-dispatch (same payment, later attempt) reports the kept result again; two records
 * of one payment handled at once share one handler call.
 *
 * Nothing but {@link GatewayWorker.stop} ends the worker: while payrail or Kafka is
 * unreachable it waits and retries with capped jittered backoff for as long as it
 * takes ({@link GatewayWorker.waiting} is true meanwhile). A result payrail refuses as
 * final (an unknown payment, a conflicting outcome, a refused signature) is logged and
 * dropped, on its own: the other results of its batch are unaffected.
 *
 * Tracing: payrail's request id (the record's `x-request-id` header) is bound while the
 * request is handled (log lines carry it), sent as the report's `x-request-id` metadata,
 * and as the result's entry in `ReportResultsRequest.request_ids` of a batch.
 */

import { setTimeout as sleep } from "node:timers/promises";
import type { KeyObject } from "node:crypto";

import {
  Kafka,
  logLevel as KafkaLogLevel,
  type Consumer,
  type EachBatchPayload,
  type IHeaders,
  type KafkaMessage,
  type LogEntry,
} from "kafkajs";

import { ConnectError } from "@connectrpc/connect";

import { sleepBackoff } from "./backoff.js";
import { FormatError, SealingError } from "./errors.js";
import { Logger, currentRequestId, withRequestId } from "./log.js";
import type { GatewayRequest, GatewayResult, WireFormat } from "./model.js";
import { gatewayResult } from "./model.js";
import { CallbackClient, REQUEST_ID_KEY, ResultBatcher, codeName, codeOf, type Reported } from "./reporting.js";
import { type Card, unsealCard } from "./sealing.js";

/** What a handler decides for one request. */
export type Outcome =
  | { readonly approved: true; readonly gatewayReference?: string }
  | {
      readonly approved: false;
      /** Machine-readable, e.g. `card_declined` (letters, digits, `_.:-`, ≤ 64). */
      readonly failureCode: string;
      readonly failureMessage?: string;
      readonly gatewayReference?: string;
    };

/**
 * What a gateway implements: decide on one request. `card` is null for wallet-funded
 * purchases. Resolve null to never answer (payrail's janitor then times the payment
 * out). `signal` aborts when the worker stops.
 */
export type Handler = (request: GatewayRequest, card: Card | null, signal: AbortSignal) => Promise<Outcome | null>;

export function approve(gatewayReference = ""): Outcome {
  return { approved: true, gatewayReference };
}

export function decline(failureCode: string, failureMessage = ""): Outcome {
  return { approved: false, failureCode, failureMessage };
}

/** The result of one request, with the event id payrail de-duplicates on. */
export function resultFor(request: GatewayRequest, outcome: Outcome, nowS = Math.floor(Date.now() / 1000)): GatewayResult {
  return gatewayResult({
    eventId: `${request.requestId}/result`,
    paymentId: request.paymentId,
    outcome: outcome.approved ? "APPROVED" : "DECLINED",
    failureCode: outcome.approved ? "" : outcome.failureCode,
    failureMessage: outcome.approved ? "" : (outcome.failureMessage ?? ""),
    gatewayReference: outcome.gatewayReference ?? "",
    occurTime: nowS,
  });
}

const REQUEST_ID_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** payrail's request id from a record's headers, when it is well formed. */
export function requestIdFrom(headers: IHeaders | undefined): string | null {
  const raw = headers?.[REQUEST_ID_KEY];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined) return null;
  const text = Buffer.isBuffer(value) ? value.toString("latin1") : value;
  return REQUEST_ID_SHAPE.test(text) ? text : null;
}

/** One record to handle: its value and headers. */
export interface RequestRecord {
  readonly value: Buffer | null;
  readonly headers?: IHeaders;
}

export interface KafkaOptions {
  /** `host:port` of the brokers. */
  brokers: readonly string[];
  clientId?: string;
  /** Partitions whose batches are handled at once, so their results share calls (default 3). */
  partitionsConsumedConcurrently?: number;
  /** The group's session timeout, in ms (default 10000, as payrail's own consumers: a
   * crashed worker's partitions move on within about 10 s). */
  sessionTimeoutMs?: number;
}

export interface GatewayWorkerOptions {
  gatewayId: string;
  wireFormat: WireFormat;
  /** The gateway's X25519 private key (sealing.loadPrivateKey). */
  privateKey: KeyObject;
  callbacks: CallbackClient;
  handler: Handler;
  kafka: KafkaOptions;
  /** How long a ready result waits for others to share its call, in ms (default 5). */
  lingerMs?: number;
  /** At most this many results per ReportResults call (default 100; 1: ReportResult each). */
  batchMax?: number;
  /** Recently answered payments remembered, to report the same result again (default 10000). */
  answeredMax?: number;
  /** The longest wait between two tries of a failed batch or a lost broker, in ms (default 10000). */
  backoffMaxMs?: number;
  /** A handler call longer than this fails (the batch is tried again later), in ms (default 30000). */
  handlerTimeoutMs?: number;
  /** Aborting it stops the worker at once (use {@link GatewayWorker.stop} for a graceful stop). */
  signal?: AbortSignal;
  logger?: Logger;
}

/** Consumes a gateway's request topic and reports each outcome. */
export class GatewayWorker {
  readonly topic: string;
  private readonly options: GatewayWorkerOptions;
  private readonly batcher: ResultBatcher;
  private readonly logger: Logger;
  private readonly answered = new Map<string, GatewayResult>();
  private readonly deciding = new Map<string, Promise<GatewayResult | null>>();
  private readonly answeredMax: number;
  private readonly backoffMaxMs: number;
  private readonly handlerTimeoutMs: number;
  private readonly abort = new AbortController();
  private stopping = false;
  private kafkaFailures = 0;
  // False from each (re)connection attempt until kafkajs connects: a broker that is
  // down shows as waiting at once, not only when kafkajs's own retries run out.
  private kafkaConnected = true;
  private failingBatches = 0;
  private joined = false;
  private consumer: Consumer | null = null;
  private running: Promise<void> | null = null;

  constructor(options: GatewayWorkerOptions) {
    this.options = options;
    this.topic = `gateway.${options.gatewayId}.requests`;
    this.logger = options.logger ?? new Logger(options.gatewayId, "gateway_sdk.worker");
    this.batcher = new ResultBatcher(options.callbacks, {
      lingerMs: options.lingerMs ?? 5,
      batchMax: options.batchMax ?? 100,
      logger: this.logger,
    });
    this.answeredMax = options.answeredMax ?? 10_000;
    this.backoffMaxMs = options.backoffMaxMs ?? 10_000;
    this.handlerTimeoutMs = options.handlerTimeoutMs ?? 30_000;
    options.signal?.addEventListener("abort", () => this.abort.abort(), { once: true });
  }

  /** True while the worker waits for payrail or Kafka to come back (for health). */
  get waiting(): boolean {
    return !this.kafkaConnected || this.kafkaFailures > 0 || this.failingBatches > 0 || this.options.callbacks.waiting;
  }

  /** True once the worker has joined its consumer group (and until it stops). */
  get consuming(): boolean {
    return this.joined && !this.stopping;
  }

  /** Consume until {@link stop}; resolves when stopped. */
  run(): Promise<void> {
    this.running ??= this.loop();
    return this.running;
  }

  /**
   * Stop consuming, give the batches in hand up to `graceMs` to finish and report, then
   * abort whatever still waits (its records are not committed: they are read again by
   * the next consumer) and leave the group.
   */
  async stop(graceMs = 3_000): Promise<void> {
    this.stopping = true;
    // Not yet consuming: nothing in hand to finish, so no reason to wait.
    if (!this.joined) this.abort.abort();
    const consumer = this.consumer;
    const finished = (async () => {
      await this.batcher.drain();
      // kafkajs's stop() waits for the batches being handled.
      await consumer?.stop();
    })();
    await Promise.race([finished.catch(() => undefined), sleep(graceMs)]);
    this.abort.abort();
    await Promise.race([this.running ?? Promise.resolve(), sleep(graceMs)]);
  }

  private async loop(): Promise<void> {
    const signal = this.abort.signal;
    const { kafka: kafkaOptions } = this.options;
    const kafka = new Kafka({
      clientId: kafkaOptions.clientId ?? this.options.gatewayId,
      brokers: [...kafkaOptions.brokers],
      logLevel: KafkaLogLevel.WARN,
      logCreator: () => (entry: LogEntry) => this.kafkaLog(entry),
      // Bounded per try; the loop below waits and tries again for as long as it takes.
      retry: { initialRetryTime: 300, maxRetryTime: 5_000, retries: 5 },
    });
    while (!this.stopping && !signal.aborted) {
      const consumer = kafka.consumer({
        groupId: this.options.gatewayId,
        sessionTimeout: kafkaOptions.sessionTimeoutMs ?? 10_000,
        heartbeatInterval: 3_000,
        retry: { initialRetryTime: 300, maxRetryTime: 5_000, retries: 5, restartOnFailure: async () => true },
      });
      this.consumer = consumer;
      this.kafkaConnected = false;
      consumer.on(consumer.events.CONNECT, () => {
        this.kafkaConnected = true;
      });
      const crashed = new Promise<void>((resolve) => {
        consumer.on(consumer.events.CRASH, (event) => {
          this.kafkaFailures += 1;
          this.logger.warning("kafka consumer failed", {
            error: event.payload.error.name,
            restart: event.payload.restart,
          });
          if (!event.payload.restart) resolve();
        });
      });
      consumer.on(consumer.events.GROUP_JOIN, () => {
        if (!this.joined) this.logger.info("consuming", { topic: this.topic });
        this.joined = true;
        this.kafkaRecovered();
      });
      consumer.on(consumer.events.FETCH, () => this.kafkaRecovered());
      try {
        // kafkajs retries a connection for seconds; a stop must not wait for that.
        await untilAborted(consumer.connect(), signal);
        await consumer.subscribe({ topic: this.topic, fromBeginning: true });
        await consumer.run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          partitionsConsumedConcurrently: kafkaOptions.partitionsConsumedConcurrently ?? 3,
          eachBatch: (payload) => this.eachBatch(consumer, payload),
        });
        const stopped = new Promise<void>((resolve) => {
          if (signal.aborted || this.stopping) resolve();
          signal.addEventListener("abort", () => resolve(), { once: true });
          consumer.on(consumer.events.STOP, () => resolve());
        });
        await Promise.race([crashed, stopped]);
      } catch (error) {
        this.kafkaFailures += 1;
        if (this.kafkaFailures === 1 || this.kafkaFailures % 10 === 0) {
          this.logger.warning("kafka unreachable; retrying", { error: errorName(error), failures: this.kafkaFailures });
        }
      } finally {
        await Promise.race([consumer.disconnect().catch(() => undefined), sleep(5_000)]);
      }
      if (this.stopping || signal.aborted) break;
      try {
        await sleepBackoff(this.kafkaFailures, { maxMs: this.backoffMaxMs }, signal);
      } catch {
        break; // aborted
      }
    }
    this.joined = false;
    this.kafkaConnected = true; // stopped: no longer waiting for anything
  }

  private kafkaRecovered(): void {
    if (this.kafkaFailures > 0) this.logger.info("kafka reachable again", { failures: this.kafkaFailures });
    this.kafkaFailures = 0;
  }

  private kafkaLog(entry: LogEntry): void {
    // kafkajs logs every reconnect attempt; outages are reported once by the loop above.
    if (entry.level <= KafkaLogLevel.ERROR) return;
    this.logger.debug("kafkajs", { message: entry.log.message });
  }

  /** One partition's fetched records: handled together, committed once all are done,
   * tried again after a backoff while any is not. */
  private async eachBatch(consumer: Consumer, payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, resolveOffset, isRunning, isStale } = payload;
    if (batch.messages.length === 0) return;
    // kafkajs sends heartbeats only when asked; a batch waiting for payrail must not
    // cost the partition.
    const beating = setInterval(() => void heartbeat().catch(() => undefined), 3_000);
    let failures = 0;
    try {
      for (;;) {
        if (this.stopping || !isRunning() || isStale()) return; // not committed: read again
        try {
          await this.handleRecords(batch.messages);
          break;
        } catch (error) {
          if (this.abort.signal.aborted) return;
          failures += 1;
          if (failures === 1) this.failingBatches += 1;
          if (failures === 1 || failures % 10 === 0) {
            this.logger.warning("batch not fully handled; retrying", {
              error: errorName(error),
              partition: batch.partition,
              failures,
            });
          }
          try {
            await sleepBackoff(failures, { maxMs: this.backoffMaxMs }, this.abort.signal);
          } catch {
            return;
          }
        }
      }
      const last = batch.messages[batch.messages.length - 1] as KafkaMessage;
      await consumer.commitOffsets([
        { topic: batch.topic, partition: batch.partition, offset: (BigInt(last.offset) + 1n).toString() },
      ]);
      resolveOffset(last.offset);
    } finally {
      clearInterval(beating);
      if (failures > 0) this.failingBatches -= 1;
    }
  }

  /** Handle records at once; rejects when any one could not be finished. */
  async handleRecords(records: readonly RequestRecord[]): Promise<void> {
    const outcomes = await Promise.allSettled(records.map((r) => this.handle(r.value, r.headers)));
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }

  /** Handle one request (`headers`: the Kafka record's, for payrail's request id). */
  handle(raw: Buffer | null, headers?: IHeaders): Promise<void> {
    return withRequestId(requestIdFrom(headers), () => this.handleOne(raw ?? Buffer.alloc(0)));
  }

  private async handleOne(raw: Buffer): Promise<void> {
    let request: GatewayRequest;
    try {
      request = this.options.wireFormat.decodeRequest(raw);
    } catch (error) {
      if (!(error instanceof FormatError)) throw error;
      this.logger.error("undecodable request dropped", { reason: error.reason, field: error.field });
      return;
    }
    const result = await this.decide(request);
    if (result !== null) await this.report(request, result);
  }

  /** The payment's result: remembered, being decided by another record, or decided now. */
  private async decide(request: GatewayRequest): Promise<GatewayResult | null> {
    const previous = this.answered.get(request.paymentId);
    if (previous !== undefined) return previous;
    const pending = this.deciding.get(request.paymentId);
    if (pending !== undefined) return pending;
    const deciding = this.decideNow(request);
    this.deciding.set(request.paymentId, deciding);
    try {
      const result = await deciding;
      if (result !== null) this.remember(request.paymentId, result);
      return result;
    } finally {
      this.deciding.delete(request.paymentId);
    }
  }

  private async decideNow(request: GatewayRequest): Promise<GatewayResult | null> {
    let card: Card | null = null;
    if (request.sealedCard !== null) {
      try {
        card = unsealCard(this.options.privateKey, request.sealedCard, request.paymentId);
      } catch (error) {
        if (!(error instanceof SealingError)) throw error;
        this.logger.error("card could not be unsealed", { payment_id: request.paymentId });
        return resultFor(request, decline("card_unreadable", "the card could not be opened by the gateway"));
      }
    }
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.handlerTimeoutMs)]);
    // An outcome the handler returned is kept even if its time ran out meanwhile:
    // asking again could charge the payment twice.
    const outcome = await this.options.handler(request, card, signal);
    return outcome === null ? null : resultFor(request, outcome);
  }

  private async report(request: GatewayRequest, result: GatewayResult): Promise<void> {
    let reported: Reported;
    try {
      // Alone or in a batch, whichever the batcher makes of it.
      reported = await this.batcher.submit(result, currentRequestId());
    } catch (error) {
      if (this.abort.signal.aborted) throw error; // stopping: not committed, read again
      if (!(error instanceof ConnectError)) throw error; // not payrail's answer: tried again
      // Retryable codes were retried by the client for as long as it ran; what arrives
      // here is final (UNAUTHENTICATED, INVALID_ARGUMENT, an unexplained error that kept
      // coming back): logged and dropped, payrail's janitor takes the payment over.
      this.logger.error("result not accepted", {
        payment_id: request.paymentId,
        code: codeName(codeOf(error)),
      });
      return;
    }
    if (reported.disposition === "NOT_FOUND" || reported.disposition === "CONFLICT") {
      // payrail holds another final outcome, or never gave us this payment.
      this.logger.error("result not accepted", {
        payment_id: request.paymentId,
        code: reported.disposition,
        payment_status: reported.paymentStatus || undefined,
      });
      return;
    }
    this.logger.info("result reported", {
      payment_id: request.paymentId,
      attempt: request.attempt,
      outcome: result.outcome,
      failure_code: result.failureCode,
      duplicate: reported.duplicate,
    });
  }

  private remember(paymentId: string, result: GatewayResult): void {
    this.answered.delete(paymentId);
    this.answered.set(paymentId, result);
    while (this.answered.size > this.answeredMax) {
      const oldest = this.answered.keys().next().value as string;
      this.answered.delete(oldest);
    }
  }
}

/** `promise`, or a rejection as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function errorName(error: unknown): string {
  if (error instanceof Error) {
    const code = codeOf(error);
    return error.name === "ConnectError" ? `grpc ${codeName(code)}` : error.name;
  }
  return typeof error;
}
