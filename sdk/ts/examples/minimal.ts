// A complete minimal gateway: consume gateway.my-gateway.requests, open the card,
// decide, report the signed result; stop cleanly on SIGTERM.
import { readFileSync } from "node:fs";

import {
  CallbackClient, CallbackSecret, GatewayWorker, approve, connect, decline, getFormat, loadPrivateKey,
  type Card, type GatewayRequest, type Outcome,
} from "@payrail/gateway-sdk";

const gatewayId = "my-gateway";
const wireFormat = getFormat("json"); // the format the gateway was registered with
const stop = new AbortController();

async function handler(request: GatewayRequest, card: Card | null, signal: AbortSignal): Promise<Outcome | null> {
  signal.throwIfAborted();
  if (card !== null && card.number.endsWith("0002")) return decline("card_declined", "the card was declined");
  return approve(`ref_${request.requestId}`); // null instead: never answer
}

const worker = new GatewayWorker({
  gatewayId,
  wireFormat,
  privateKey: loadPrivateKey(Buffer.from(readFileSync("keys/my-gateway.x25519", "utf8").trim(), "base64")),
  callbacks: new CallbackClient(connect("127.0.0.1:50051"), {
    gatewayId, wireFormat, signal: stop.signal,
    secrets: [CallbackSecret.fromBase64(readFileSync("keys/my-gateway.secret", "utf8"))],
  }),
  handler,
  kafka: { brokers: ["127.0.0.1:9092"] },
  signal: stop.signal,
});
process.once("SIGTERM", () => void worker.stop(3_000).finally(() => stop.abort()));
await worker.run();
