// Delivering devices to the upstream device API: the outbox worker (default,
// durable, retrying) and the synchronous path (the reference's behaviour).
import { KilnError } from '../pki/errors.js';
import type { OutboxEntry, Store, UpstreamPause } from './db/store.js';
import type { Logger } from './logger.js';
import { backoffMs, type Delivery, type UpstreamClient } from './upstream.js';

export interface OutboxPolicy {
  maxAttempts: number;
  baseMs: number;
  capMs: number;
  /** After a 401/403 nothing is sent for this long. */
  authPauseMs: number;
  pollMs: number;
}

export const DEFAULT_OUTBOX_POLICY: OutboxPolicy = { maxAttempts: 12, baseMs: 1000, capMs: 300_000, authPauseMs: 300_000, pollMs: 1000 };

export interface OutboxWorker {
  /** A new delivery was queued: look now rather than at the next poll. */
  kick(): void;
  state(): { state: 'running' | 'auth_failed'; detail?: string };
  stop(): Promise<void>;
}

interface Deps {
  store: Store;
  upstream: UpstreamClient;
  logger: Logger;
  clock: () => Date;
  policy?: Partial<OutboxPolicy>;
  random?: () => number;
}

function logDelivery(logger: Logger, e: OutboxEntry, attempt: number, d: Delivery, ms: number): void {
  const fields = {
    uuid: e.uuid,
    serial: e.serial,
    attempt,
    outcome: d.kind,
    status: 'status' in d ? d.status : undefined,
    error: d.kind === 'retry' ? d.error : undefined,
    latency_ms: Math.round(ms),
  };
  if (d.kind === 'created' || d.kind === 'exists') logger.info('upstream_delivery', fields);
  else logger.warn('upstream_delivery', fields);
}

export function startOutboxWorker(deps: Deps): OutboxWorker {
  const p = { ...DEFAULT_OUTBOX_POLICY, ...deps.policy };
  const random = deps.random ?? Math.random;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  // the pause lives in the registry (kilnctl upstream status shows it, upstream retry lifts it);
  // this is the worker's last reading of it
  let pause: UpstreamPause | undefined;
  const paused = (): boolean => pause !== undefined && deps.clock() < pause.until;

  const deliver = async (e: OutboxEntry): Promise<void> => {
    const attempt = e.attempts + 1;
    // back-off and give-up count from the last operator retry
    const sinceRetry = attempt - e.attemptsBeforeRetry;
    const started = performance.now();
    const d = await deps.upstream.createDevice(e.body);
    logDelivery(deps.logger, e, attempt, d, performance.now() - started);
    const now = deps.clock();
    if (d.kind === 'created' || d.kind === 'exists') {
      // 409: the device is there already, which is what we wanted
      await deps.store.updateOutbox(e.serial, {
        status: 'delivered',
        attempts: attempt,
        nextAttemptAt: now,
        lastError: d.kind === 'exists' ? 'HTTP 409 (exists)' : '',
        deliveredAt: now,
      });
      return;
    }
    if (d.kind === 'auth') {
      const reason = `HTTP ${d.status}: ${d.body}`;
      pause = { until: new Date(now.getTime() + p.authPauseMs), reason, pausedAt: now };
      deps.logger.error('upstream_auth_failed', { status: d.status, reason: d.body, paused_s: Math.round(p.authPauseMs / 1000) });
      await deps.store.pauseUpstream(pause);
      await deps.store.updateOutbox(e.serial, {
        status: 'pending',
        attempts: attempt,
        nextAttemptAt: pause.until,
        lastError: reason,
        deliveredAt: null,
      });
      return;
    }
    const lastError = d.kind === 'rejected' ? `HTTP ${d.status}: ${d.body}` : d.error;
    const give = d.kind === 'rejected' || sinceRetry >= p.maxAttempts;
    await deps.store.updateOutbox(e.serial, {
      status: give ? 'failed' : 'pending',
      attempts: attempt,
      nextAttemptAt: new Date(now.getTime() + backoffMs(sinceRetry, p.baseMs, p.capMs, random)),
      lastError,
      deliveredAt: null,
    });
  };

  const tick = async (): Promise<void> => {
    timer = undefined;
    let more = false;
    try {
      pause = await deps.store.upstreamPause(deps.clock());
      if (!paused()) {
        const due = await deps.store.dueOutbox(deps.clock(), 16);
        for (let i = 0; i < due.length && !stopped && !paused(); i += 4) await Promise.all(due.slice(i, i + 4).map(deliver));
        more = due.length === 16 && !paused();
      }
    } catch (err) {
      deps.logger.error('upstream_worker_error', { error: (err as Error).message });
    }
    if (!stopped) timer = setTimeout(() => void run(), more ? 0 : p.pollMs);
  };
  const run = (): Promise<void> => (running ??= tick().finally(() => (running = undefined)));

  timer = setTimeout(() => void run(), 0);
  return {
    kick() {
      if (!running && !stopped && !paused()) {
        clearTimeout(timer);
        timer = setTimeout(() => void run(), 0);
      }
    },
    state: () => (paused() ? { state: 'auth_failed', detail: pause!.reason } : { state: 'running' }),
    async stop() {
      stopped = true;
      clearTimeout(timer);
      // a delivery in flight either finishes soon or stays pending for the next start
      await Promise.race([running, sleep(1000)]);
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The reference's behaviour: the device waits; 4 tries 0.1 s, 0.2 s, 1 s apart. */
export async function deliverNow(
  store: Store,
  upstream: UpstreamClient,
  logger: Logger,
  entry: { serial: string; uuid: string; body: string },
  clock: () => Date,
  delays = [100, 200, 1000],
): Promise<void> {
  let lastError = '';
  for (let attempt = 1; attempt <= delays.length + 1; attempt++) {
    const started = performance.now();
    const d = await upstream.createDevice(entry.body);
    logDelivery(logger, { ...entry, attempts: attempt - 1 } as OutboxEntry, attempt, d, performance.now() - started);
    const done = (status: 'delivered' | 'failed', error: string): Promise<void> =>
      store.updateOutbox(entry.serial, {
        status,
        attempts: attempt,
        nextAttemptAt: clock(),
        lastError: error,
        deliveredAt: status === 'delivered' ? clock() : null,
      });
    if (d.kind === 'created') return done('delivered', '');
    if (d.kind === 'exists') {
      await done('failed', `HTTP 409: ${d.body}`);
      throw new KilnError('conflict', d.body || 'the device already exists upstream');
    }
    if (d.kind === 'auth' || d.kind === 'rejected') {
      if (d.kind === 'auth') logger.error('upstream_auth_failed', { status: d.status, reason: d.body });
      await done('failed', `HTTP ${d.status}: ${d.body}`);
      throw new KilnError('unavailable', `upstream device API refused the request (HTTP ${d.status}); the certificate was not delivered`);
    }
    lastError = d.error;
    if (attempt <= delays.length) await sleep(delays[attempt - 1]);
  }
  await store.updateOutbox(entry.serial, {
    status: 'failed',
    attempts: delays.length + 1,
    nextAttemptAt: clock(),
    lastError,
    deliveredAt: null,
  });
  throw new KilnError('unavailable', 'upstream device API unavailable; the certificate was not delivered, try again');
}
