/** The sandbox's test-card behaviour, the same as payrail's Python sandboxes. */

import { type Card, type GatewayRequest, type Outcome, approve, decline } from "@payrail/gateway-sdk";

export const APPROVE = "4242424242424242";
export const DECLINES: ReadonlyMap<string, readonly [string, string]> = new Map([
  ["4000000000000002", ["card_declined", "the card was declined"]],
  ["4000000000009995", ["insufficient_funds", "the card has insufficient funds"]],
]);
/** Never answered: payrail's janitor times the payment out. */
export const NEVER_ANSWERS = "4000000000000119";

/** Wallet-funded purchases (no card) and every other card are approved. */
export function decide(request: GatewayRequest, card: Card | null): Outcome | null {
  const number = card === null ? "" : card.number;
  if (number === NEVER_ANSWERS) return null;
  const declined = DECLINES.get(number);
  if (declined !== undefined) return decline(declined[0], declined[1]);
  return approve(`sbx_${request.requestId}`);
}
