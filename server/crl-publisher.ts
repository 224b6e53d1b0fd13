// Keeps the CRL current: made at start, again when a revocation commits (any process:
// it watches the registry's revision, so `kilnctl devices revoke` on the same registry
// counts) and before half of its validity has passed, so it is never stale past its
// nextUpdate while the server runs. A failure to sign (an HSM that is down) is logged,
// shown in /healthz, and retried with back-off; the last good CRL is served meanwhile,
// and no revocation is lost: they are in the registry, and the next CRL lists them all.
import { renameSync, writeFileSync } from 'node:fs';
import type { Ca } from '../pki/ca.js';
import { createCrl } from '../pki/crl.js';
import { pem } from '../pki/der.js';
import { parseRevocationReason } from '../pki/crl.js';
import { fileError } from '../pki/errors.js';
import type { Store } from './db/store.js';
import type { Logger } from './logger.js';

export interface CrlSettings {
  /** nextUpdate - thisUpdate */
  periodMs: number;
  /** also written here (atomically) for gateways that read a file */
  file?: string;
  /** how often the registry's revision is checked */
  pollMs?: number;
}

export interface PublishedCrl {
  der: Buffer;
  pem: string;
  number: number;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: number;
}

export interface CrlPublisher {
  current(): PublishedCrl | undefined;
  state(): { state: 'ok' | 'failing' | 'none'; number?: number; next_update?: string; error?: string };
  /** Makes a new CRL now (after a revocation in this process). */
  refresh(): Promise<void>;
  stop(): void;
}

export async function startCrlPublisher(
  deps: { store: Store; ca: Ca; logger: Logger; clock: () => Date },
  s: CrlSettings,
): Promise<CrlPublisher> {
  const pollMs = s.pollMs ?? 2000;
  let current: PublishedCrl | undefined;
  let revision = -1;
  let failure: string | undefined;
  let failures = 0;
  let nextTryAt = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let running: Promise<void> | undefined;

  const make = async (): Promise<void> => {
    const rev = await deps.store.crlRevision();
    const now = deps.clock();
    const entries = await deps.store.revokedCertificates();
    const number = await deps.store.nextCrlNumber();
    const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const nextUpdate = new Date(thisUpdate.getTime() + s.periodMs);
    const der = await createCrl(deps.ca, {
      number,
      thisUpdate,
      nextUpdate,
      entries: entries.map((e) => ({ serial: e.serial, revokedAt: e.revokedAt, reason: parseRevocationReason(e.reason) })),
    });
    const text = pem('X509 CRL', der);
    if (s.file) {
      const tmp = `${s.file}.tmp-${process.pid}`;
      try {
        writeFileSync(tmp, text, { mode: 0o644 });
        renameSync(tmp, s.file);
      } catch (err) {
        throw fileError('write', s.file, err);
      }
    }
    current = { der, pem: text, number, thisUpdate, nextUpdate, entries: entries.length };
    revision = rev;
    deps.logger.info('crl_published', { number, entries: entries.length, next_update: nextUpdate.toISOString(), file: s.file });
  };

  const attempt = async (): Promise<void> => {
    try {
      await make();
      if (failure) deps.logger.warn('crl_recovered', { number: current?.number });
      failure = undefined;
      failures = 0;
    } catch (err) {
      failures++;
      failure = (err as Error).message.split('\n')[0];
      nextTryAt = Date.now() + Math.min(60_000, 1000 * 2 ** Math.min(failures, 6));
      deps.logger.error('crl_failed', { error: failure, attempt: failures, valid_until: current?.nextUpdate.toISOString() });
    }
  };

  const due = async (): Promise<boolean> => {
    if (!current) return true;
    const now = deps.clock().getTime();
    // renew at half of the validity, long before nextUpdate
    if (now >= current.thisUpdate.getTime() + s.periodMs / 2) return true;
    return (await deps.store.crlRevision()) !== revision;
  };

  const tick = async (): Promise<void> => {
    try {
      if ((!failure || Date.now() >= nextTryAt) && (await due())) await attempt();
    } catch (err) {
      deps.logger.error('crl_failed', { error: (err as Error).message });
    }
    if (!stopped) timer = setTimeout(() => void run(), pollMs);
  };
  const run = (): Promise<void> => (running ??= tick().finally(() => (running = undefined)));

  await attempt();
  timer = setTimeout(() => void run(), pollMs);
  return {
    current: () => current,
    state: () =>
      failure
        ? { state: 'failing', number: current?.number, next_update: current?.nextUpdate.toISOString(), error: failure }
        : current
          ? { state: 'ok', number: current.number, next_update: current.nextUpdate.toISOString() }
          : { state: 'none' },
    refresh: async () => {
      await running;
      await attempt();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
