/** Capped exponential backoff with full jitter, abortable. */

import { setTimeout as sleep } from "node:timers/promises";

export interface BackoffOptions {
  /** The first ceiling, in ms (default 200). */
  baseMs?: number;
  /** No wait is longer than this, in ms. */
  maxMs: number;
}

/** The ceiling before try `attempt + 1`: base · 2^(attempt-1), capped. */
export function backoffCeilingMs(attempt: number, options: BackoffOptions): number {
  const base = options.baseMs ?? 200;
  return Math.min(options.maxMs, base * 2 ** Math.min(Math.max(attempt - 1, 0), 20));
}

/** Wait a random time in [0, ceiling] (full jitter: many gateways retrying after one
 * outage do not come back in step). Rejects with the signal's reason when aborted. */
export async function sleepBackoff(attempt: number, options: BackoffOptions, signal?: AbortSignal): Promise<void> {
  const waitMs = Math.random() * backoffCeilingMs(attempt, options);
  await sleep(waitMs, undefined, signal === undefined ? undefined : { signal });
}
