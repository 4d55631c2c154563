/**
 * An in-memory CallbackService (connect's router transport: the real gRPC client
 * stack, no network) for the unit tests. It verifies every signature with the SDK's
 * verifier and decodes every payload, as payrail does.
 */

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import {
  CallbackService,
  ReportResultResponseSchema,
  ReportResultsResponseSchema,
  ReportedResultSchema,
  ResultDisposition,
} from "@payrail/contracts/callbacks/v1/callbacks";

import { JSON_FORMAT } from "../src/formats/index.js";
import { Logger } from "../src/log.js";
import type { GatewayResult } from "../src/model.js";
import { CallbackClient } from "../src/reporting.js";
import { verify } from "../src/signing.js";

export const SECRET = Buffer.alloc(32, 7);
export const quiet = new Logger("test", "test", "error", { write: () => true });

export interface Call {
  rpc: "one" | "many";
  results: readonly GatewayResult[];
  requestIds: readonly string[];
  headerRequestId: string | null;
}

/** A CallbackService that answers from `script` (one entry per call: a code to fail
 * with, or nothing to succeed), recording every accepted call. */
export function fakePayrail(script: (Code | null)[] = [], dispositions: Map<string, ResultDisposition> = new Map()) {
  const calls: Call[] = [];
  let n = 0;
  const transport = createRouterTransport(({ service }) => {
    service(CallbackService, {
      reportResult(request, context) {
        verify(request.payload, context.requestHeader.get("x-payrail-signature") ?? undefined, [SECRET], Math.floor(Date.now() / 1000));
        const failure = script[n++];
        if (failure != null) throw new ConnectError("scripted", failure);
        const decoded = JSON_FORMAT.decodeResult(request.payload);
        calls.push({ rpc: "one", results: [decoded], requestIds: [], headerRequestId: context.requestHeader.get("x-request-id") });
        const disposition = dispositions.get(decoded.eventId);
        if (disposition === ResultDisposition.NOT_FOUND) throw new ConnectError("no", Code.NotFound);
        if (disposition === ResultDisposition.CONFLICT) throw new ConnectError("no", Code.FailedPrecondition);
        return create(ReportResultResponseSchema, { paymentId: decoded.paymentId, duplicate: disposition === ResultDisposition.DUPLICATE });
      },
      reportResults(request, context) {
        verify(request.payload, context.requestHeader.get("x-payrail-signature") ?? undefined, [SECRET], Math.floor(Date.now() / 1000));
        const failure = script[n++];
        if (failure != null) throw new ConnectError("scripted", failure);
        const decoded = JSON_FORMAT.decodeResults(request.payload);
        calls.push({ rpc: "many", results: decoded, requestIds: request.requestIds, headerRequestId: context.requestHeader.get("x-request-id") });
        return create(ReportResultsResponseSchema, {
          results: decoded.map((r) =>
            create(ReportedResultSchema, {
              eventId: r.eventId,
              paymentId: r.paymentId,
              disposition: dispositions.get(r.eventId) ?? ResultDisposition.APPLIED,
            }),
          ),
        });
      },
    });
  });
  return { transport, calls };
}

export function client(transport: ReturnType<typeof fakePayrail>["transport"], signal?: AbortSignal): CallbackClient {
  return new CallbackClient(transport, {
    gatewayId: "gw",
    wireFormat: JSON_FORMAT,
    secrets: [SECRET],
    backoffMaxMs: 5,
    unexplainedTriesMax: 3,
    logger: quiet,
    signal,
  });
}

