// The registry on embedded SQLite (better-sqlite3, WAL), through drizzle-orm.
import Database from 'better-sqlite3';
import { and, count, desc, eq, gt, inArray, isNotNull, isNull, lte, min, sql, type SQL } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { existsSync, statfsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { KilnError } from '../../../pki/errors.js';
import { makeDirs } from '../../make-dirs.js';
import { packageRoot } from '../../paths.js';
import { crlColumns, storedCrl } from '../crl-row.js';
import type {
  ReadinessCheck,
  AdminToken,
  Approval,
  AuditEntry,
  DeniedDevice,
  Device,
  Lot,
  OutboxEntry,
  Page,
  RekeyAllowance,
  Revocation,
  Store,
  UpstreamPause,
} from '../store.js';
import { sqliteError } from './errors.js';
import { guardStore } from '../guard.js';
import { createInlineWriter, createRecorder } from './recorder.js';
import {
  adminTokens,
  approvals,
  auditLog,
  certificates,
  crlState,
  deniedDevices,
  devices,
  lots,
  outbox,
  preauthorized,
  rekeyAllowances,
  upstreamPause,
} from './schema.js';
import { backfillKeyHashes } from './key-backfill.js';
import { startWriterWorker, type WriterEvents } from './writer.js';

export interface SqliteStoreOptions {
  /**
   * Where /sign records are committed: 'inline' on this thread, or 'worker' on a
   * writer thread so fsyncs never block the event loop (needs the built dist/).
   */
  writer?: 'inline' | 'worker';
  /**
   * Create the file (and its directory) when it does not exist: only the server does.
   * Admin commands open an existing registry, so a mistyped path is an error.
   */
  create?: boolean;
  /** What the writer thread tells the server: stops, restarts, refusals to write a moved file. */
  writerEvents?: WriterEvents;
  /** /readyz fails below this much free space where the registry is (default 64 MiB). */
  minFreeBytes?: number;
}

const DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024;

/** Free space for the registry's directory, against a threshold. */
function diskCheck(dir: string, minFree: number): ReadinessCheck {
  try {
    const s = statfsSync(dir);
    const free = s.bavail * s.bsize;
    const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
    return { name: 'disk', ok: free >= minFree, detail: `${mib(free)} free (threshold ${mib(minFree)})` };
  } catch (err) {
    return { name: 'disk', ok: false, detail: `cannot read free space of ${dir}: ${(err as NodeJS.ErrnoException).code}` };
  }
}

export function openSqliteStore(path: string, opts: SqliteStoreOptions = {}): Store {
  const create = opts.create ?? true;
  if (path !== ':memory:' && !create && !existsSync(path))
    throw new KilnError('no_input', `no registry at ${path} (check --db or KILN_DB; the server creates it on its first start)`);
  let sqlite: Database.Database;
  try {
    if (path !== ':memory:' && create) makeDirs(dirname(path));
    sqlite = new Database(path, { fileMustExist: !create });
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
  } catch (err) {
    throw err instanceof KilnError ? err : sqliteError(err, path, 'open');
  }
  const db = drizzle(sqlite);
  try {
    migrate(db, { migrationsFolder: join(packageRoot(), 'server/db/sqlite/migrations') });
  } catch (err) {
    sqlite.close();
    throw sqliteError(err, path, 'migrate');
  }

  backfillKeyHashes(sqlite);

  const findDenied = (uuid: string): DeniedDevice | undefined => {
    const row = deniedRow.get(uuid);
    return row && { uuid: row.uuid, name: row.name, reason: row.reason, deniedAt: new Date(row.denied_at) };
  };
  const deniedRow = sqlite.prepare<[string], { uuid: string; name: string; reason: string; denied_at: number }>(
    'SELECT uuid, name, reason, denied_at FROM denied_devices WHERE uuid = ?',
  );
  const worker = opts.writer === 'worker' ? startWriterWorker(path, opts.writerEvents) : undefined;
  const writer = worker ?? createInlineWriter(createRecorder(sqlite));

  const deny = sqlite.transaction((uuids: string[], reason: string, now: Date): DeniedDevice[] =>
    uuids.map((uuid) => {
      const known = findDenied(uuid);
      if (known) return known;
      const name = db.select({ name: devices.name }).from(devices).where(eq(devices.uuid, uuid)).get()?.name ?? '';
      const entry = { uuid, name, reason, deniedAt: now };
      db.insert(deniedDevices).values(entry).run();
      return entry;
    }),
  );

  const deleteDevices = sqlite.transaction((uuids: string[], reason: string, now: Date) => {
    const found = db.select({ uuid: devices.uuid }).from(devices).where(inArray(devices.uuid, uuids)).all();
    const missing = uuids.filter((u) => !found.some((f) => f.uuid === u));
    if (missing.length) throw new KilnError('not_found', `unknown device ${missing.join(', ')}`);
    deny(uuids, reason, now);
    db.delete(devices).where(inArray(devices.uuid, uuids)).run();
  });

  const deleteDenied = sqlite.transaction((uuids: string[]) => {
    const found = db.select({ uuid: deniedDevices.uuid }).from(deniedDevices).where(inArray(deniedDevices.uuid, uuids)).all();
    const missing = uuids.filter((u) => !found.some((f) => f.uuid === u));
    if (missing.length) throw new KilnError('not_found', `not on the deny-list: ${missing.join(', ')}`);
    db.delete(deniedDevices).where(inArray(deniedDevices.uuid, uuids)).run();
  });

  const retryOutbox = sqlite.transaction((uuids: string[] | undefined, now: Date): number => {
    if (uuids) {
      const found = db.selectDistinct({ uuid: outbox.uuid }).from(outbox).where(inArray(outbox.uuid, uuids)).all();
      const missing = uuids.filter((u) => !found.some((f) => f.uuid === u));
      if (missing.length) throw new KilnError('not_found', `no upstream delivery for ${missing.join(', ')}`);
    }
    db.delete(upstreamPause).run();
    const undelivered = inArray(outbox.status, ['failed', 'pending']);
    return db
      .update(outbox)
      .set({ status: 'pending', attemptsBeforeRetry: sql`${outbox.attempts}`, nextAttemptAt: now })
      .where(uuids ? and(undelivered, inArray(outbox.uuid, uuids)) : undelivered)
      .run().changes;
  });
  const allowRekey = sqlite.transaction((uuids: string[], reason: string, now: Date): RekeyAllowance[] => {
    const found = db.select({ uuid: devices.uuid }).from(devices).where(inArray(devices.uuid, uuids)).all();
    const missing = uuids.filter((u) => !found.some((f) => f.uuid === u));
    if (missing.length) throw new KilnError('not_found', `unknown device ${missing.join(', ')}`);
    return uuids.map((uuid) => {
      const entry = { uuid, allowedAt: now, reason, usedAt: null, usedSerial: null };
      db.insert(rekeyAllowances)
        .values(entry)
        .onConflictDoUpdate({ target: rekeyAllowances.uuid, set: { allowedAt: now, reason, usedAt: null, usedSerial: null } })
        .run();
      return entry;
    });
  });

  const lotOf = (name: string): Lot | undefined => db.select().from(lots).where(eq(lots.name, name)).get() as Lot | undefined;
  // token enrollment reads these on every /sign (docs/performance.md: drizzle's query
  // building was ~0.1 ms of event loop per registration there); prepared once, bound positionally
  const lotRow = (r: Record<string, unknown> | undefined): Lot | undefined =>
    r && {
      name: r.name as string,
      tokenSha256: r.token_sha256 as string,
      createdAt: new Date(r.created_at as number),
      expiresAt: r.expires_at === null ? null : new Date(r.expires_at as number),
      maxDevices: r.max_devices as number | null,
      hwidPattern: r.hwid_pattern as string | null,
      deviceGroup: r.device_group as string | null,
      production: r.production as Lot['production'],
      approval: r.approval as Lot['approval'],
      revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at as number),
      admitted: r.admitted as number,
    };
  // every admin API request looks its bearer token up
  const adminByToken = sqlite.prepare<
    [string],
    { name: string; role: string; token_sha256: string; created_at: number; revoked_at: number | null }
  >('SELECT * FROM admin_tokens WHERE token_sha256 = ?');
  const adminRow = (r: {
    name: string;
    role: string;
    token_sha256: string;
    created_at: number;
    revoked_at: number | null;
  }): AdminToken => ({
    name: r.name,
    role: r.role as AdminToken['role'],
    tokenSha256: r.token_sha256,
    createdAt: new Date(r.created_at),
    revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at),
  });
  const lotByToken = sqlite.prepare<[string], Record<string, unknown>>('SELECT * FROM lots WHERE token_sha256 = ?');
  const mustLot = (name: string): Lot => {
    const lot = lotOf(name);
    if (!lot) throw new KilnError('not_found', `no lot named ${name}`);
    return lot;
  };
  const approvalOf = (uuid: string): Approval | undefined =>
    db.select().from(approvals).where(eq(approvals.uuid, uuid)).get() as Approval | undefined;

  const decideApprovals = sqlite.transaction((uuids: string[], decision: 'approved' | 'rejected', now: Date): Approval[] => {
    const found = uuids.map(approvalOf);
    const missing = uuids.filter((_, i) => !found[i]);
    if (missing.length) throw new KilnError('not_found', `no approval request for ${missing.join(', ')}`);
    db.update(approvals).set({ status: decision, decidedAt: now }).where(inArray(approvals.uuid, uuids)).run();
    if (decision === 'rejected') deny(uuids, 'rejected by an operator', now);
    return uuids.map((u) => approvalOf(u)!);
  });

  const importPreauthorized = sqlite.transaction((rows: Parameters<Store['importPreauthorized']>[0], now: Date): number => {
    const put = sqlite.prepare(
      `INSERT INTO preauthorized (uuid, key_sha256, hardware_id, name, lot, created_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (uuid) DO UPDATE SET key_sha256 = excluded.key_sha256, hardware_id = excluded.hardware_id,
         name = excluded.name, lot = excluded.lot, created_at = excluded.created_at`,
    );
    const at = now.getTime();
    for (const r of rows) put.run(r.uuid, r.keySha256, r.hardwareId, r.name, r.lot, at);
    return rows.length;
  });

  const revocations = (where: SQL): Revocation[] =>
    db
      .select({
        serial: certificates.serial,
        uuid: certificates.uuid,
        revokedAt: certificates.revokedAt,
        reason: certificates.revocationReason,
      })
      .from(certificates)
      .where(where)
      .all() as Revocation[];
  const revoke = sqlite.transaction((target: { uuids?: string[]; serials?: string[] }, reason: string, now: Date): Revocation[] => {
    const serials = new Set<string>();
    for (const uuid of target.uuids ?? []) {
      const certs = db.select({ serial: certificates.serial }).from(certificates).where(eq(certificates.uuid, uuid)).all();
      if (!certs.length) throw new KilnError('not_found', `device ${uuid} has no certificate`);
      for (const c of certs) serials.add(c.serial);
    }
    for (const serial of target.serials ?? []) {
      if (!db.select({ serial: certificates.serial }).from(certificates).where(eq(certificates.serial, serial)).get())
        throw new KilnError('not_found', `no certificate with serial ${serial}`);
      serials.add(serial);
    }
    const list = [...serials];
    db.update(certificates)
      .set({ revokedAt: now, revocationReason: reason })
      .where(and(inArray(certificates.serial, list), isNull(certificates.revokedAt)))
      .run();
    sqlite
      .prepare('INSERT INTO crl_state (id, number, revision) VALUES (1, 0, 1) ON CONFLICT (id) DO UPDATE SET revision = revision + 1')
      .run();
    return revocations(inArray(certificates.serial, list));
  });
  const nextCrlNumber = sqlite.transaction((): number => {
    sqlite
      .prepare('INSERT INTO crl_state (id, number, revision) VALUES (1, 1, 0) ON CONFLICT (id) DO UPDATE SET number = number + 1')
      .run();
    return db.select({ n: crlState.number }).from(crlState).where(eq(crlState.id, 1)).get()!.n;
  });

  const pauseOf = (now: Date): UpstreamPause | undefined =>
    db
      .select({ until: upstreamPause.until, reason: upstreamPause.reason, pausedAt: upstreamPause.pausedAt })
      .from(upstreamPause)
      .where(gt(upstreamPause.until, now))
      .get();

  return guardStore(
    {
      recordIssuance: (cert, o) => writer.record(cert, o),
      async findDenied(uuid) {
        return findDenied(uuid);
      },
      async getDevice(uuid): Promise<Device | undefined> {
        return db.select().from(devices).where(eq(devices.uuid, uuid)).get();
      },
      async listDevices(page: Page) {
        return db.select().from(devices).orderBy(desc(devices.lastRegisteredAt), devices.uuid).limit(page.limit).offset(page.offset).all();
      },
      async certificatesOf(uuid) {
        return db.select().from(certificates).where(eq(certificates.uuid, uuid)).orderBy(desc(certificates.issuedAt)).all();
      },
      async certificate(serial) {
        return db.select().from(certificates).where(eq(certificates.serial, serial)).get();
      },
      async deny(uuids, reason, now) {
        return deny(uuids, reason, now);
      },
      async deleteDevices(uuids, reason, now) {
        deleteDevices(uuids, reason, now);
      },
      async listDenied(page) {
        return db
          .select()
          .from(deniedDevices)
          .orderBy(desc(deniedDevices.deniedAt), deniedDevices.uuid)
          .limit(page.limit)
          .offset(page.offset)
          .all();
      },
      async deleteDenied(uuids) {
        deleteDenied(uuids);
      },
      async dueOutbox(now, limit) {
        return db
          .select()
          .from(outbox)
          .where(and(eq(outbox.status, 'pending'), lte(outbox.nextAttemptAt, now)))
          .orderBy(outbox.nextAttemptAt)
          .limit(limit)
          .all() as OutboxEntry[];
      },
      async updateOutbox(serial, change) {
        // on the writer thread when there is one: its commit (and fsync) never blocks the event loop
        if (worker) return worker.updateOutbox(serial, change);
        db.update(outbox).set(change).where(eq(outbox.serial, serial)).run();
      },
      async outboxSummary(now) {
        const counts = db.select({ status: outbox.status, n: count() }).from(outbox).groupBy(outbox.status).all();
        const oldest = db
          .select({ at: min(outbox.createdAt) })
          .from(outbox)
          .where(eq(outbox.status, 'pending'))
          .get()?.at;
        const n = (st: string): number => counts.find((c) => c.status === st)?.n ?? 0;
        return {
          pending: n('pending'),
          failed: n('failed'),
          delivered: n('delivered'),
          oldestPendingAgeSeconds: oldest ? Math.max(0, Math.round((now.getTime() - new Date(oldest).getTime()) / 1000)) : null,
          paused: pauseOf(now) ?? null,
        };
      },
      async listOutbox(filter, page) {
        const q = db.select().from(outbox);
        return (filter.status ? q.where(eq(outbox.status, filter.status)) : q)
          .orderBy(desc(outbox.createdAt))
          .limit(page.limit)
          .offset(page.offset)
          .all() as OutboxEntry[];
      },
      async retryOutbox(uuids, now) {
        return retryOutbox(uuids, now);
      },
      async pauseUpstream(p) {
        db.insert(upstreamPause)
          .values({ id: 1, ...p })
          .onConflictDoUpdate({ target: upstreamPause.id, set: p })
          .run();
      },
      async upstreamPause(now) {
        return pauseOf(now);
      },
      async allowRekey(uuids, reason, now) {
        return allowRekey(uuids, reason, now);
      },
      async createLot(lot) {
        if (lotOf(lot.name)) throw new KilnError('conflict', `lot ${lot.name} already exists`);
        db.insert(lots).values(lot).run();
        return lotOf(lot.name)!;
      },
      async getLot(name) {
        return lotOf(name);
      },
      async lotByTokenHash(hash) {
        return lotRow(lotByToken.get(hash));
      },
      async listLots() {
        return db.select().from(lots).orderBy(desc(lots.createdAt), lots.name).all() as Lot[];
      },
      async revokeLot(name, now) {
        const lot = mustLot(name);
        if (!lot.revokedAt) db.update(lots).set({ revokedAt: now }).where(eq(lots.name, name)).run();
        return lotOf(name)!;
      },
      async rotateLotToken(name, hash) {
        mustLot(name);
        db.update(lots).set({ tokenSha256: hash }).where(eq(lots.name, name)).run();
        return lotOf(name)!;
      },
      async approval(uuid) {
        return approvalOf(uuid);
      },
      async notePending(a, now) {
        db.insert(approvals)
          .values({ ...a, firstSeen: now, lastSeen: now, attempts: 1, status: 'pending', decidedAt: null })
          .onConflictDoUpdate({
            target: approvals.uuid,
            set: { lastSeen: now, attempts: sql`${approvals.attempts} + 1`, clientAddress: a.clientAddress },
          })
          .run();
        return approvalOf(a.uuid)!;
      },
      async listApprovals(filter, page) {
        const q = db.select().from(approvals);
        return (filter.status ? q.where(eq(approvals.status, filter.status)) : q)
          .orderBy(desc(approvals.lastSeen), approvals.uuid)
          .limit(page.limit)
          .offset(page.offset)
          .all() as Approval[];
      },
      async decideApprovals(uuids, decision, now) {
        return decideApprovals(uuids, decision, now);
      },
      async preauthorization(uuid) {
        return db.select().from(preauthorized).where(eq(preauthorized.uuid, uuid)).get();
      },
      async importPreauthorized(rows, now) {
        return importPreauthorized(rows, now);
      },
      async createAdminToken(t) {
        if (db.select().from(adminTokens).where(eq(adminTokens.name, t.name)).get())
          throw new KilnError('conflict', `an admin token named ${t.name} already exists`);
        db.insert(adminTokens)
          .values({ ...t, revokedAt: null })
          .run();
        return { ...t, revokedAt: null };
      },
      async adminTokenByHash(hash) {
        const row = adminByToken.get(hash);
        return row && adminRow(row);
      },
      async listAdminTokens() {
        return db.select().from(adminTokens).orderBy(adminTokens.name).all() as AdminToken[];
      },
      async revokeAdminToken(name, now) {
        const found = db.select().from(adminTokens).where(eq(adminTokens.name, name)).get();
        if (!found) throw new KilnError('not_found', `no admin token named ${name}`);
        if (!found.revokedAt) db.update(adminTokens).set({ revokedAt: now }).where(eq(adminTokens.name, name)).run();
        return db.select().from(adminTokens).where(eq(adminTokens.name, name)).get() as AdminToken;
      },
      async appendAudit(entry) {
        db.insert(auditLog).values(entry).run();
      },
      async listAudit(page) {
        return db.select().from(auditLog).orderBy(desc(auditLog.id)).limit(page.limit).offset(page.offset).all() as AuditEntry[];
      },
      async revoke(target, reason, now) {
        return revoke(target, reason, now);
      },
      async revokedCertificates() {
        return revocations(isNotNull(certificates.revokedAt));
      },
      async crlRevision() {
        return db.select({ r: crlState.revision }).from(crlState).where(eq(crlState.id, 1)).get()?.r ?? 0;
      },
      async nextCrlNumber() {
        return nextCrlNumber();
      },
      async publishedCrl() {
        return storedCrl(db.select().from(crlState).where(eq(crlState.id, 1)).get());
      },
      async publishedCrlNumber() {
        return (
          db
            .select({ n: crlState.number })
            .from(crlState)
            .where(and(eq(crlState.id, 1), isNotNull(crlState.der)))
            .get()?.n ?? 0
        );
      },
      async claimCrl(now, until) {
        return (
          sqlite
            .prepare(
              `INSERT INTO crl_state (id, number, revision, making_until) VALUES (1, 0, 0, ?)
             ON CONFLICT (id) DO UPDATE SET making_until = excluded.making_until WHERE making_until IS NULL OR making_until <= ?`,
            )
            .run(until.getTime(), now.getTime()).changes === 1
        );
      },
      async saveCrl(c) {
        db.update(crlState).set(crlColumns(c)).where(eq(crlState.id, 1)).run();
      },
      async rekeyAllowance(uuid) {
        return db.select().from(rekeyAllowances).where(eq(rekeyAllowances.uuid, uuid)).get();
      },
      async ping() {
        sqlite.prepare('select 1').get();
      },
      async readiness() {
        const checks: ReadinessCheck[] = [];
        if (worker) {
          const started = performance.now();
          let fileProblem: string | undefined;
          try {
            fileProblem = await worker.ping();
            checks.push({ name: 'writer', ok: true, detail: `round trip ${(performance.now() - started).toFixed(1)} ms` });
          } catch (err) {
            checks.push({ name: 'writer', ok: false, detail: String((err as KilnError).cause ?? err).replace(/^Error: /, '') });
          }
          checks.push({ name: 'registry', ok: !fileProblem, detail: fileProblem ?? path });
        } else {
          sqlite.prepare('select 1').get();
          checks.push({ name: 'registry', ok: true, detail: path });
        }
        if (path !== ':memory:') checks.push(diskCheck(dirname(path), opts.minFreeBytes ?? DEFAULT_MIN_FREE_BYTES));
        return checks;
      },
      writerStats() {
        return worker?.stats();
      },
      writerThreadForTests() {
        return worker?.threadForTests();
      },
      async close() {
        await writer.close();
        if (sqlite.open) sqlite.close();
      },
    },
    (err) => sqliteError(err, path, 'use'),
  );
}
