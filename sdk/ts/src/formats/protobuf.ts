/**
 * The `protobuf` wire format.
 *
 * Results are `payrail.callbacks.v1.GatewayResult` in the protobuf binary encoding
 * (`outcome` the `OUTCOME_*` enum, `occur_time` a `google.protobuf.Timestamp`, whose
 * sub-second nanos are accepted and dropped); a batch is `GatewayResultBatch`. The
 * messages are protobuf-es v2 code generated from payrail's contracts
 * (`@payrail/contracts`), so field numbers cannot drift; strings must be valid UTF-8.
 *
 * Requests: payrail's contracts define no protobuf message for a gateway request, so a
 * `protobuf` gateway receives its requests in the `json` format, byte for byte, and
 * only its results are protobuf (as payrail's reference SDK does).
 */

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import {
  GatewayResultBatchSchema,
  GatewayResultSchema,
  Outcome as PbOutcome,
  type GatewayResult as PbGatewayResult,
} from "@payrail/contracts/callbacks/v1/callbacks";

import { FormatError } from "../errors.js";
import {
  BATCH_ENCODED_MAX_BYTES,
  type GatewayRequest,
  type GatewayResult,
  type Outcome,
  type WireFormat,
  checkBatch,
  checkEncoded,
  gatewayResult,
} from "../model.js";
import { JSON_FORMAT } from "./json.js";

export const CONTENT_TYPE = "application/x-protobuf";
/** The content type of the requests, which are JSON (see above). */
export const REQUEST_CONTENT_TYPE = JSON_FORMAT.contentType;
const NANOS_MAX = 999_999_999;

const TO_PB: Record<Outcome, PbOutcome> = {
  APPROVED: PbOutcome.APPROVED,
  DECLINED: PbOutcome.DECLINED,
};

export function resultToPb(result: GatewayResult): PbGatewayResult {
  return create(GatewayResultSchema, {
    eventId: result.eventId,
    paymentId: result.paymentId,
    outcome: TO_PB[result.outcome],
    failureCode: result.failureCode,
    failureMessage: result.failureMessage,
    gatewayReference: result.gatewayReference,
    // Always present, even at 0 seconds, as payrail's encoder writes it.
    occurTime: create(TimestampSchema, { seconds: BigInt(result.occurTime) }),
  });
}

export function resultFromPb(message: PbGatewayResult): GatewayResult {
  let outcome: Outcome;
  if (message.outcome === PbOutcome.APPROVED) outcome = "APPROVED";
  else if (message.outcome === PbOutcome.DECLINED) outcome = "DECLINED";
  // OUTCOME_UNSPECIFIED, or a number this version does not know.
  else throw new FormatError("invalid_field", "outcome");
  const occurTime = message.occurTime;
  if (occurTime === undefined) throw new FormatError("missing_field", "occur_time");
  if (occurTime.nanos < 0 || occurTime.nanos > NANOS_MAX) throw new FormatError("invalid_field", "occur_time");
  return gatewayResult({
    eventId: message.eventId,
    paymentId: message.paymentId,
    outcome,
    failureCode: message.failureCode,
    failureMessage: message.failureMessage,
    gatewayReference: message.gatewayReference,
    occurTime: occurTime.seconds,
  });
}

function decodeOrRefuse<T>(decode: () => T): T {
  try {
    return decode();
  } catch {
    // Truncated, a wrong wire type, invalid UTF-8 in a string: protobuf-es throws a
    // plain Error whose message may quote input; none of it is passed on.
    throw new FormatError("malformed");
  }
}

class ProtobufFormat implements WireFormat {
  readonly name = "protobuf" as const;
  readonly contentType = CONTENT_TYPE;

  encodeRequest(request: GatewayRequest): Uint8Array {
    return JSON_FORMAT.encodeRequest(request);
  }

  decodeRequest(data: Uint8Array): GatewayRequest {
    return JSON_FORMAT.decodeRequest(data);
  }

  encodeResult(result: GatewayResult): Uint8Array {
    return checkEncoded(toBinary(GatewayResultSchema, resultToPb(result)));
  }

  decodeResult(data: Uint8Array): GatewayResult {
    checkEncoded(data);
    return resultFromPb(decodeOrRefuse(() => fromBinary(GatewayResultSchema, data)));
  }

  encodeResults(results: readonly GatewayResult[]): Uint8Array {
    const batch = create(GatewayResultBatchSchema, { results: checkBatch(results).map(resultToPb) });
    return checkEncoded(toBinary(GatewayResultBatchSchema, batch), BATCH_ENCODED_MAX_BYTES);
  }

  decodeResults(data: Uint8Array): readonly GatewayResult[] {
    checkEncoded(data, BATCH_ENCODED_MAX_BYTES);
    const batch = decodeOrRefuse(() => fromBinary(GatewayResultBatchSchema, data));
    return checkBatch(batch.results.map(resultFromPb));
  }
}

export const PROTOBUF_FORMAT: WireFormat = new ProtobufFormat();
