/** The sandbox's settings, read once from the same environment variables as payrail's
 * Python sandboxes, with their defaults. */

import { join } from "node:path";

export const GATEWAY_ID = "sandbox-ts";
export const WIRE_FORMAT = "json";
export const PORT_VARIABLE = "PAYRAIL_SANDBOX_TS_PORT";
export const DEFAULT_PORT = 50064;

export interface SandboxSettings {
  readonly gatewayId: string;
  readonly wireFormat: string;
  /** The gRPC health port. */
  readonly port: number;
  readonly kafkaBrokers: readonly string[];
  /** gateway_svc's gRPC address, plaintext. */
  readonly callbackTarget: string;
  readonly privateKeyFile: string;
  readonly secretFile: string;
  /** How long the sandbox "thinks" before answering, in ms. */
  readonly latencyMs: number;
  /** Results ready within lingerMs of each other share one ReportResults call. */
  readonly lingerMs: number;
  /** At most this many results per call (1: every result alone, with ReportResult). */
  readonly batchMax: number;
  readonly logLevel: string;
}

/** A whole number in [min, max] from the environment, or a clear error naming the
 * variable (never echoing its value is not needed here: these are not secrets). */
function intFrom(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^[0-9]+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new RangeError(`${name} must be a whole number from ${min} to ${max}`);
  }
  return Number(raw);
}

export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): SandboxSettings {
  const keys = env.PAYRAIL_SANDBOX_KEYS_DIR || ".data/keys";
  return {
    gatewayId: GATEWAY_ID,
    wireFormat: WIRE_FORMAT,
    port: intFrom(env, PORT_VARIABLE, DEFAULT_PORT, 1, 65_535),
    kafkaBrokers: (env.PAYRAIL_KAFKA_BOOTSTRAP || "127.0.0.1:9092").split(",").map((b) => b.trim()).filter(Boolean),
    callbackTarget: env.PAYRAIL_CALLBACK_TARGET || "127.0.0.1:50051",
    privateKeyFile: join(keys, `${GATEWAY_ID}.x25519`),
    secretFile: join(keys, `${GATEWAY_ID}.secret`),
    latencyMs: intFrom(env, "PAYRAIL_SANDBOX_LATENCY_MS", 20, 0, 60_000),
    lingerMs: intFrom(env, "PAYRAIL_SANDBOX_LINGER_MS", 5, 0, 1_000),
    batchMax: intFrom(env, "PAYRAIL_SANDBOX_BATCH_MAX", 100, 1, 500),
    logLevel: env.PAYRAIL_LOG_LEVEL || "INFO",
  };
}
