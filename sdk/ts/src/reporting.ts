/**
 * Reporting results to payrail: {@link CallbackClient} makes the signed
 * `CallbackService/ReportResult` (one result) and `ReportResults` (many, applied in one
 * transaction) calls over gRPC; {@link ResultBatcher} gathers the results that are
 * ready within `lingerMs` of each other into one `ReportResults` call and hands each
 * caller its own result's reply.
 *
 * Retries: payrail or the network unreachable, slow or busy (UNAVAILABLE,
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, CANCELLED) is retried with the same
 * payload, re-signed with a fresh timestamp, with capped jittered backoff, for as long
 * as it takes (until the client's signal aborts: shutdown). An error payrail does not
 * explain (UNKNOWN, INTERNAL) is retried `unexplainedTriesMax` times and then raised;
 * the batcher then reports that batch's results one by one, so one bad result never
 * holds the others back. Every other error is final and raised at once.
 */

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  CallbackService,
  ResultDisposition,
  ReportResultRequestSchema,
  ReportResultsRequestSchema,
} from "@payrail/contracts/callbacks/v1/callbacks";

import { sleepBackoff } from "./backoff.js";
import { FormatError } from "./errors.js";
import { Logger } from "./log.js";
import { BATCH_RESULTS_MAX, type GatewayResult, type WireFormat } from "./model.js";
import { type SecretLike, signWithSecrets, SIGNATURE_HEADER } from "./signing.js";

/** payrail's request id: the Kafka header and the gRPC metadata key. */
export const REQUEST_ID_KEY = "x-request-id";

/** payrail (or the network) is unreachable, slow or busy: retried for as long as it takes. */
export const RETRYABLE_CODES: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Canceled,
]);
/** An error payrail did not explain: retried a bounded number of times. */
export const UNEXPLAINED_CODES: ReadonlySet<Code> = new Set([Code.Unknown, Code.Internal]);

export type Disposition = "APPLIED" | "DUPLICATE" | "NOT_FOUND" | "CONFLICT";

/** What payrail did with one result. */
export interface Reported {
  readonly eventId: string;
  readonly paymentId: string;
  readonly disposition: Disposition;
  readonly duplicate: boolean;
  /** For a CONFLICT: the payment's state (empty when unknown, e.g. after ReportResult). */
  readonly paymentStatus: string;
}

const DISPOSITIONS: ReadonlyMap<ResultDisposition, Disposition> = new Map([
  [ResultDisposition.APPLIED, "APPLIED"],
  [ResultDisposition.DUPLICATE, "DUPLICATE"],
  [ResultDisposition.NOT_FOUND, "NOT_FOUND"],
  [ResultDisposition.CONFLICT, "CONFLICT"],
]);

/** The gRPC code of an error (UNKNOWN for anything that is not a gRPC error). */
export function codeOf(error: unknown): Code {
  return error instanceof ConnectError ? error.code : Code.Unknown;
}

/** The gRPC code's name as payrail's logs write it (UNAVAILABLE, ...). */
export function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

export interface CallbackClientOptions {
  gatewayId: string;
  wireFormat: WireFormat;
  /** 1 to 8 active callback secrets; each call carries one `v1` per secret. */
  secrets: readonly SecretLike[];
  /** The deadline of one call, in ms (default 5000). */
  timeoutMs?: number;
  /** Tries of a call that fails UNKNOWN or INTERNAL before it is raised (default 5). */
  unexplainedTriesMax?: number;
  /** The longest wait between two tries, in ms (default 5000). */
  backoffMaxMs?: number;
  /** Aborting it ends every retry loop (shutdown): the pending call then rejects. */
  signal?: AbortSignal;
  logger?: Logger;
}

/** A plaintext gRPC (HTTP/2) transport to payrail's gateway_svc, e.g. `127.0.0.1:50051`. */
export function connect(target: string): Transport {
  const baseUrl = /^https?:\/\//.test(target) ? target : `http://${target}`;
  return createGrpcTransport({
    baseUrl,
    // An idle connection is checked every 15 s, so a payrail that went away is noticed
    // before the next report rather than by its deadline.
    pingIntervalMs: 15_000,
    pingTimeoutMs: 5_000,
  });
}

/** Reports results to payrail's CallbackService, signed with the gateway's secrets. */
export class CallbackClient {
  readonly gatewayId: string;
  readonly wireFormat: WireFormat;
  private readonly client: Client<typeof CallbackService>;
  private readonly secrets: readonly SecretLike[];
  private readonly timeoutMs: number;
  private readonly unexplainedTriesMax: number;
  private readonly backoffMaxMs: number;
  private readonly signal: AbortSignal | undefined;
  private readonly logger: Logger;
  private failingCalls = 0;

  constructor(transport: Transport, options: CallbackClientOptions) {
    if (options.secrets.length < 1 || options.secrets.length > 8) throw new RangeError("1 to 8 secrets");
    this.client = createClient(CallbackService, transport);
    this.gatewayId = options.gatewayId;
    this.wireFormat = options.wireFormat;
    this.secrets = [...options.secrets];
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.unexplainedTriesMax = options.unexplainedTriesMax ?? 5;
    this.backoffMaxMs = options.backoffMaxMs ?? 5_000;
    this.signal = options.signal;
    this.logger = options.logger ?? new Logger("gateway-sdk", "gateway_sdk.reporting");
  }

  /** True while a call waits for payrail to come back (for health). */
  get waiting(): boolean {
    return this.failingCalls > 0;
  }

  /** `ReportResult` for one result. Resolves with what payrail did, including a final
   * NOT_FOUND or CONFLICT (FAILED_PRECONDITION) as that disposition; rejects with the
   * call's error otherwise. */
  async report(result: GatewayResult, requestId: string | null = null): Promise<Reported> {
    const payload = this.wireFormat.encodeResult(result);
    const request = create(ReportResultRequestSchema, { gatewayId: this.gatewayId, payload });
    try {
      const reply = await this.call("ReportResult", payload, requestId, (headers, signal) =>
        this.client.reportResult(request, { headers, signal, timeoutMs: this.timeoutMs }),
      );
      return {
        eventId: result.eventId,
        paymentId: result.paymentId,
        disposition: reply.duplicate ? "DUPLICATE" : "APPLIED",
        duplicate: reply.duplicate,
        paymentStatus: "",
      };
    } catch (error) {
      const code = codeOf(error);
      if (code === Code.NotFound || code === Code.FailedPrecondition) {
        return {
          eventId: result.eventId,
          paymentId: result.paymentId,
          disposition: code === Code.NotFound ? "NOT_FOUND" : "CONFLICT",
          duplicate: false,
          paymentStatus: "",
        };
      }
      throw error;
    }
  }

  /**
   * `ReportResults` for many results: what payrail did with each, in order.
   * `requestIds` (empty, or one per result; null where there is none) is payrail's
   * request id of the request each result answers; the first one goes as the call's
   * `x-request-id`. More than 500 results, or more bytes than the format's bound, go in
   * several calls (a batch the format cannot encode within the bound is halved).
   */
  async reportMany(results: readonly GatewayResult[], requestIds: readonly (string | null)[] = []): Promise<Reported[]> {
    if (requestIds.length > 0 && requestIds.length !== results.length) {
      throw new RangeError("requestIds must be empty or hold one id per result");
    }
    const ids = requestIds.length > 0 ? [...requestIds] : results.map(() => null);
    const replies: Reported[] = [];
    for (let start = 0; start < results.length; start += BATCH_RESULTS_MAX) {
      const end = start + BATCH_RESULTS_MAX;
      replies.push(...(await this.reportFitting(results.slice(start, end), ids.slice(start, end))));
    }
    return replies;
  }

  private async reportFitting(results: readonly GatewayResult[], requestIds: readonly (string | null)[]): Promise<Reported[]> {
    let payload: Uint8Array;
    try {
      payload = this.wireFormat.encodeResults(results);
    } catch (error) {
      if (!(error instanceof FormatError) || error.reason !== "oversized" || results.length === 1) throw error;
      const half = Math.floor(results.length / 2);
      return [
        ...(await this.reportFitting(results.slice(0, half), requestIds.slice(0, half))),
        ...(await this.reportFitting(results.slice(half), requestIds.slice(half))),
      ];
    }
    const request = create(ReportResultsRequestSchema, {
      gatewayId: this.gatewayId,
      payload,
      requestIds: requestIds.some((id) => id) ? requestIds.map((id) => id ?? "") : [],
    });
    const firstId = requestIds.find((id) => id) ?? null;
    const reply = await this.call("ReportResults", payload, firstId, (headers, signal) =>
      this.client.reportResults(request, { headers, signal, timeoutMs: this.timeoutMs }),
    );
    if (reply.results.length !== results.length) {
      throw new ConnectError("payrail answered a batch with another number of results", Code.Internal);
    }
    return reply.results.map((r) => ({
      eventId: r.eventId,
      paymentId: r.paymentId,
      disposition: DISPOSITIONS.get(r.disposition) ?? "CONFLICT",
      duplicate: r.duplicate,
      paymentStatus: r.paymentStatus,
    }));
  }

  /** One signed call, retried as the module doc says. */
  private async call<T>(
    rpc: string,
    payload: Uint8Array,
    requestId: string | null,
    send: (headers: Record<string, string>, signal: AbortSignal | undefined) => Promise<T>,
  ): Promise<T> {
    let unexplained = 0;
    let failing = false;
    try {
      for (let attempt = 1; ; attempt += 1) {
        this.signal?.throwIfAborted();
        // A fresh timestamp per try: a retry after a pause must not arrive stale.
        const headers: Record<string, string> = {
          [SIGNATURE_HEADER]: signWithSecrets(payload, this.secrets, Math.floor(Date.now() / 1000)),
        };
        if (requestId) headers[REQUEST_ID_KEY] = requestId;
        try {
          return await send(headers, this.signal);
        } catch (error) {
          this.signal?.throwIfAborted();
          const code = codeOf(error);
          if (UNEXPLAINED_CODES.has(code)) {
            unexplained += 1;
            if (unexplained >= this.unexplainedTriesMax) throw error;
          } else if (!RETRYABLE_CODES.has(code)) {
            throw error;
          }
          if (!failing) {
            failing = true;
            this.failingCalls += 1;
          }
          if (attempt === 1 || attempt % 10 === 0) {
            this.logger.warning("callback failed; retrying", { rpc, code: codeName(code), attempt });
          }
          await sleepBackoff(attempt, { maxMs: this.backoffMaxMs }, this.signal);
        }
      }
    } finally {
      if (failing) this.failingCalls -= 1;
    }
  }
}

interface Waiting {
  readonly result: GatewayResult;
  readonly requestId: string | null;
  readonly resolve: (reported: Reported) => void;
  readonly reject: (error: unknown) => void;
}

export interface ResultBatcherOptions {
  /** How long the first ready result waits for others to share its call, in ms
   * (default 5; 0 to 1000). */
  lingerMs?: number;
  /** At most this many results per call (default 100; 1 to 500; 1: every result
   * alone, with ReportResult). */
  batchMax?: number;
  logger?: Logger;
}

/**
 * Gathers the results that are ready within `lingerMs` of the first one (at most
 * `batchMax`) into one `ReportResults` call, and hands each submitter its own result's
 * reply. An error of the whole call is each submitter's error, except an unexplained
 * one (UNKNOWN, INTERNAL: something in the batch failed payrail) and UNIMPLEMENTED (a
 * payrail without batches; then for good), after which the batch's results are
 * reported one by one with `ReportResult`.
 */
export class ResultBatcher {
  private readonly lingerMs: number;
  private readonly batchMax: number;
  private readonly logger: Logger;
  private batching: boolean;
  private waiting: Waiting[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly sending = new Set<Promise<void>>();

  constructor(
    private readonly callbacks: CallbackClient,
    options: ResultBatcherOptions = {},
  ) {
    this.lingerMs = options.lingerMs ?? 5;
    this.batchMax = options.batchMax ?? 100;
    if (!Number.isInteger(this.batchMax) || this.batchMax < 1 || this.batchMax > BATCH_RESULTS_MAX) {
      throw new RangeError(`batchMax must be between 1 and ${BATCH_RESULTS_MAX}`);
    }
    if (!(this.lingerMs >= 0 && this.lingerMs <= 1000)) throw new RangeError("lingerMs must be between 0 and 1000");
    this.batching = this.batchMax > 1;
    this.logger = options.logger ?? new Logger("gateway-sdk", "gateway_sdk.reporting");
  }

  /** What payrail did with `result` (rejects with the call's error when it failed). */
  submit(result: GatewayResult, requestId: string | null = null): Promise<Reported> {
    if (!this.batching) return this.callbacks.report(result, requestId);
    return new Promise<Reported>((resolve, reject) => {
      this.waiting.push({ result, requestId, resolve, reject });
      if (this.waiting.length >= this.batchMax) {
        this.flush();
      } else if (this.timer === null) {
        this.timer = setTimeout(() => this.flush(), this.lingerMs);
      }
    });
  }

  /** Send what waits now, and resolve once every call in flight has settled. */
  async drain(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.sending]);
  }

  private flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const batch = this.waiting;
    this.waiting = [];
    if (batch.length === 0) return;
    const sending = this.send(batch).finally(() => this.sending.delete(sending));
    this.sending.add(sending);
  }

  private async send(batch: readonly Waiting[]): Promise<void> {
    let replies: Reported[];
    try {
      if (batch.length === 1 || !this.batching) {
        await Promise.all(batch.map((w) => this.one(w)));
        return;
      }
      replies = await this.callbacks.reportMany(
        batch.map((w) => w.result),
        batch.map((w) => w.requestId),
      );
    } catch (error) {
      const code = codeOf(error);
      if (code === Code.Unimplemented) {
        this.logger.warning("payrail serves no batches; reporting results one by one");
        this.batching = false;
      } else if (!(error instanceof ConnectError) || !UNEXPLAINED_CODES.has(code)) {
        for (const w of batch) w.reject(error);
        return;
      }
      await Promise.all(batch.map((w) => this.one(w)));
      return;
    }
    batch.forEach((w, i) => w.resolve(replies[i] as Reported));
  }

  private async one(waiting: Waiting): Promise<void> {
    try {
      waiting.resolve(await this.callbacks.report(waiting.result, waiting.requestId));
    } catch (error) {
      waiting.reject(error);
    }
  }
}
