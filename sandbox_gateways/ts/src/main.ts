/**
 * The TypeScript sandbox gateway (`sandbox-ts`, wire format `json`): the SDK's worker
 * plus the test-card behaviour of payrail's Python sandboxes and a gRPC health port.
 * Run by `sandbox_gateways/ts/run` with the repository root as working directory.
 */

import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

import {
  CallbackClient,
  CallbackSecret,
  type Card,
  GatewayWorker,
  type GatewayRequest,
  Logger,
  connect,
  getFormat,
  loadPrivateKey,
  parseLevel,
} from "@payrail/gateway-sdk";

import { decide } from "./decide.js";
import { serveHealth } from "./health.js";
import { type SandboxSettings, settingsFromEnv } from "./settings.js";

// SIGTERM: the batches in hand get this long to finish and report; then they are
// abandoned (not committed: the next consumer reads them again).
const SHUTDOWN_GRACE_MS = 3_000;

/** A start-up problem whose message is safe to log (it names files, never contents). */
class SetupError extends Error {}

function readKeyFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    throw new SetupError(`cannot read ${path}: create it with python -m sandbox_gateways.keys`);
  }
}

async function main(settings: SandboxSettings, log: Logger): Promise<void> {
  const wireFormat = getFormat(settings.wireFormat);
  let privateKey;
  let secret;
  try {
    privateKey = loadPrivateKey(Buffer.from(readKeyFile(settings.privateKeyFile).trim(), "base64"));
    secret = CallbackSecret.fromBase64(readKeyFile(settings.secretFile));
  } catch (error) {
    if (error instanceof SetupError) throw error;
    throw new SetupError(`${settings.privateKeyFile} or ${settings.secretFile} does not hold a key of the expected form`);
  }
  const hardStop = new AbortController();
  const callbacks = new CallbackClient(connect(settings.callbackTarget), {
    gatewayId: settings.gatewayId,
    wireFormat,
    secrets: [secret],
    signal: hardStop.signal,
    logger: log.child("gateway_sdk.reporting"),
  });

  async function handler(request: GatewayRequest, card: Card | null, signal: AbortSignal) {
    if (card !== null) {
      // What the sealed card opened to, as far as a log may show it: the masked number
      // and the expiry (which travels nowhere but inside the sealed envelope).
      log.info("card opened", {
        payment_id: request.paymentId,
        masked_number: card.maskedNumber,
        exp_month: card.expMonth,
        exp_year: card.expYear,
      });
    }
    await sleep(settings.latencyMs, undefined, { signal });
    return decide(request, card);
  }

  const worker = new GatewayWorker({
    gatewayId: settings.gatewayId,
    wireFormat,
    privateKey,
    callbacks,
    handler,
    kafka: { brokers: settings.kafkaBrokers },
    lingerMs: settings.lingerMs,
    batchMax: settings.batchMax,
    signal: hardStop.signal,
    logger: log.child("gateway_sdk.worker"),
  });
  const health = await serveHealth(settings.port, () => ({ consuming: worker.consuming, waiting: worker.waiting }));
  log.info("sandbox gateway started", { gateway_id: settings.gatewayId, format: settings.wireFormat, port: settings.port });
  const running = worker.run();

  const stopped = new Promise<string>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  const why = await Promise.race([stopped, running.then(() => "worker ended")]);
  log.info("stopping", { why });
  const abandon = setTimeout(() => hardStop.abort(), SHUTDOWN_GRACE_MS);
  await worker.stop(SHUTDOWN_GRACE_MS);
  clearTimeout(abandon);
  hardStop.abort();
  health.close();
  log.info("stopped");
}

const log = new Logger("sandbox-ts", "sandbox_gateways", parseLevel(process.env.PAYRAIL_LOG_LEVEL));
let settings: SandboxSettings;
try {
  settings = settingsFromEnv();
} catch (error) {
  log.error("bad configuration", { error: error instanceof Error ? error.message : typeof error });
  process.exit(1);
}
main(settings, log).then(
  () => process.exit(0),
  (error: unknown) => {
    // A SetupError's message names a file; any other error only by its name, as its
    // message may quote input.
    const detail = error instanceof SetupError ? error.message : error instanceof Error ? error.name : typeof error;
    log.error("sandbox gateway failed", { error: detail });
    process.exit(1);
  },
);
