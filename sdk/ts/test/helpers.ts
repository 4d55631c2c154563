/** Builders shared by the unit tests. */

import { gatewayRequest, gatewayResult, type GatewayRequest, type GatewayResult, type ResultFields } from "../src/model.js";
import { type SealedCard } from "../src/sealing.js";

export function result(overrides: Partial<ResultFields> = {}): GatewayResult {
  return gatewayResult({
    eventId: "evt_1",
    paymentId: "p-1",
    outcome: "APPROVED",
    gatewayReference: "ref-1",
    occurTime: 1_700_000_000,
    ...overrides,
  });
}

export function request(overrides: { sealedCard?: SealedCard | null; paymentId?: string; requestId?: string } = {}): GatewayRequest {
  return gatewayRequest({
    requestId: overrides.requestId ?? "r-1",
    paymentId: overrides.paymentId ?? "p-1",
    attempt: 1,
    kind: "DEPOSIT",
    amountMinor: 1000n,
    currencyCode: "AUD",
    card: overrides.sealedCard ? { brand: "VISA", maskedNumber: "424242******4242" } : null,
    sealedCard: overrides.sealedCard ?? null,
    callbackDeadline: 1_700_000_030,
  });
}

export const utf8 = (text: string): Buffer => Buffer.from(text, "utf8");
