/**
 * Structured logging: one JSON object per line (`ts`, `level`, `service`, `logger`,
 * `msg`, then the fields), the shape of payrail's own services. Every line passes
 * through {@link redact}, which masks anything shaped like a card number, so a PAN
 * that slips into a message, a field or an error never reaches the log.
 *
 * The request id of the request being handled (payrail's `x-request-id`) is bound
 * with {@link withRequestId} and added to every line logged meanwhile.
 */

import { AsyncLocalStorage } from "node:async_hooks";

export type LogLevel = "debug" | "info" | "warning" | "error";
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warning: 30, error: 40 };

// 12 to 19 digits, optionally grouped by single spaces or dashes: the shapes a PAN
// takes. UUIDs are matched first and left alone (their digit groups joined by dashes
// would otherwise look like a grouped card number).
const PAN_RE =
  /(\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)|(?<!\d)(?:\d[ -]?){11,18}\d(?!\d)/g;

/** Mask card-number-like digit runs, keeping only the last four digits. */
export function redact(text: string): string {
  return text.replace(PAN_RE, (match: string, uuid: string | undefined) => {
    if (uuid) return match;
    return `[redacted-pan ...${match.replace(/\D/g, "").slice(-4)}]`;
  });
}

const requestIds = new AsyncLocalStorage<string | null>();

/** Run `fn` with payrail's request id bound (null: none). */
export function withRequestId<T>(requestId: string | null, fn: () => T): T {
  return requestIds.run(requestId, fn);
}

/** payrail's request id of the request being handled, if it sent one. */
export function currentRequestId(): string | null {
  return requestIds.getStore() ?? null;
}

export type LogFields = Record<string, unknown>;

export interface LogSink {
  write(line: string): unknown;
}

/** Parse a level name as payrail's env variables write it (INFO, WARNING, ...). */
export function parseLevel(name: string | undefined, fallback: LogLevel = "info"): LogLevel {
  const lower = (name ?? "").toLowerCase();
  if (lower === "warn") return "warning";
  if (lower === "critical") return "error";
  return lower in RANK ? (lower as LogLevel) : fallback;
}

function fieldValue(value: unknown): unknown {
  if (typeof value === "number" || typeof value === "boolean" || value === null) return value;
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return `${value.name}`; // never the message: it may quote input
  return String(value);
}

export class Logger {
  constructor(
    readonly service: string,
    readonly name: string,
    private readonly level: LogLevel = "info",
    private readonly sink: LogSink = process.stderr,
  ) {}

  child(name: string): Logger {
    return new Logger(this.service, name, this.level, this.sink);
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.level];
  }

  log(level: LogLevel, msg: string, fields: LogFields = {}): void {
    if (!this.enabled(level)) return;
    const line: Record<string, unknown> = {
      ts: new Date().toISOString(),
      level,
      service: this.service,
      logger: this.name,
      msg,
    };
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined) line[key] = fieldValue(value);
    }
    const requestId = currentRequestId();
    if (requestId !== null && !("request_id" in line)) line.request_id = requestId;
    this.sink.write(`${redact(JSON.stringify(line))}\n`);
  }

  debug(msg: string, fields?: LogFields): void {
    this.log("debug", msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    this.log("info", msg, fields);
  }

  warning(msg: string, fields?: LogFields): void {
    this.log("warning", msg, fields);
  }

  error(msg: string, fields?: LogFields): void {
    this.log("error", msg, fields);
  }
}
