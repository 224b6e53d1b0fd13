// Keeps the CRL current: made at start, again when a revocation commits (any process:
// it watches the registry's revision, so `kilnctl devices revoke` on the same registry
// counts) and before half of its validity has passed, so it is never stale past its
// nextUpdate while the server runs. Several servers on one registry make it once: the
// one that claims the job (store.claimCrl) signs and stores it, the others serve the
// stored one. A failure to sign (an HSM that is down) is logged,
// shown in /healthz, and retried with back-off; the last good CRL is served meanwhile,
// and no revocation is lost: they are in the registry, and the next CRL lists them all.
import { renameSync, writeFileSync } from 'node:fs';
import type { Ca } from '../pki/ca.js';
import { createCrl } from '../pki/crl.js';
import { pem } from '../pki/der.js';
import { parseRevocationReason } from '../pki/crl.js';
import { fileError } from '../pki/errors.js';
import type { Store, StoredCrl } from './db/store.js';

/** How long a server may take to make a CRL before another one may. */
const CLAIM_MS = 30_000;
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

  /** Serves a CRL (made here or by another server): in memory, and in the file when there is one. */
  const adopt = (crl: StoredCrl): void => {
    const text = pem('X509 CRL', crl.der);
    if (s.file) {
      const tmp = `${s.file}.tmp-${process.pid}`;
      try {
        writeFileSync(tmp, text, { mode: 0o644 });
        renameSync(tmp, s.file);
      } catch (err) {
        throw fileError('write', s.file, err);
      }
    }
    current = { der: crl.der, pem: text, number: crl.number, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate, entries: crl.entries };
    revision = crl.revision;
    deps.logger.info('crl_published', {
      number: crl.number,
      entries: crl.entries,
      next_update: crl.nextUpdate.toISOString(),
      file: s.file,
    });
  };

  /** Is a stored CRL the one to serve now: it lists the current revision and is not half through its validity? */
  const fresh = (crl: StoredCrl | undefined, rev: number, now: number): boolean =>
    crl !== undefined && crl.revision === rev && now < crl.thisUpdate.getTime() + s.periodMs / 2;

  const make = async (): Promise<void> => {
    const rev = await deps.store.crlRevision();
    const now = deps.clock();
    const stored = await deps.store.publishedCrl();
    if (stored && fresh(stored, rev, now.getTime())) {
      if (current?.number !== stored.number) adopt(stored);
      return;
    }
    // one server makes it; a claim that is not released (a server that died signing) runs out
    if (!(await deps.store.claimCrl(now, new Date(now.getTime() + CLAIM_MS)))) {
      if (stored && (!current || stored.number > current.number)) adopt(stored);
      if (!current) throw new Error('another server is making the CRL');
      return;
    }
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
    const crl = { der, number, revision: rev, thisUpdate, nextUpdate, entries: entries.length };
    await deps.store.saveCrl(crl);
    adopt(crl);
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
    if ((await deps.store.crlRevision()) !== revision) return true;
    // another server made a newer one
    return (await deps.store.publishedCrlNumber()) > current.number;
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
  // another server is making the first one: wait for it a little (it is served from the registry)
  for (let i = 0; !current && i < 20 && failure?.includes('another server'); i++) {
    await new Promise((r) => setTimeout(r, 250));
    await attempt();
  }
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
