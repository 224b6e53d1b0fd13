// The registry on PostgreSQL: the same Store as on SQLite, for several Kiln servers
// sharing one database. Certificates are recorded by a database function in batches
// (recorder.ts); everything else is plain queries. Migrations run at start-up under an
// advisory lock, so replicas starting together migrate once. The upstream outbox is
// claimed row by row (FOR UPDATE SKIP LOCKED) with a lease: a replica that dies
// mid-delivery leaves its rows to the others when the lease runs out.
import { and, count, desc, eq, gt, inArray, isNotNull, isNull, lte, min, sql, type SQL } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import { join } from 'node:path';
import pg from 'pg';
import { KilnError } from '../../../pki/errors.js';
import { packageRoot } from '../../paths.js';
import { crlColumns, storedCrl } from '../crl-row.js';
import type {
  AdminToken,
  Approval,
  AuditEntry,
  DeniedDevice,
  Lot,
  OutboxEntry,
  ReadinessCheck,
  RekeyAllowance,
  Revocation,
  Store,
  UpstreamPause,
} from '../store.js';
import { guardStore } from '../guard.js';
import { pgError, redactUrl } from './errors.js';
import { createPgWriter } from './recorder.js';
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

export interface PgStoreOptions {
  /** Connections in the pool (each carries one batch or query at a time). */
  poolSize?: number;
  /** How long a replica owns the outbox rows it claimed (a dead replica's rows come back after it). */
  outboxLeaseMs?: number;
  events?: { batch?(size: number): void };
}

/** Migrations of one database are run by one server at a time. */
const MIGRATION_LOCK = 0x6b696c6e; // "kiln"

type Db = NodePgDatabase<Record<string, never>>;

export async function openPgStore(url: string, opts: PgStoreOptions = {}): Promise<Store> {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? 8,
    connectionTimeoutMillis: 5000,
    application_name: 'kiln',
  });
  // a connection that breaks while idle (the database restarted) is dropped, not fatal
  pool.on('error', () => undefined);
  const where = redactUrl(url);
  try {
    await migrateLocked(pool);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw pgError(err, where, 'open');
  }
  const db: Db = drizzle(pool);
  const writer = createPgWriter(pool, opts.events);
  // three times the upstream timeout: a delivery in flight finishes well within its lease
  const leaseMs = opts.outboxLeaseMs ?? 30_000;

  const tx = <T>(fn: (t: Db) => Promise<T>): Promise<T> => db.transaction(async (t) => fn(t as unknown as Db));
  const missingOf = (wanted: string[], found: string[]): string[] => wanted.filter((u) => !found.includes(u));

  const denyIn = async (t: Db, uuids: string[], reason: string, now: Date): Promise<DeniedDevice[]> => {
    const out: DeniedDevice[] = [];
    for (const uuid of uuids) {
      const known = (await t.select().from(deniedDevices).where(eq(deniedDevices.uuid, uuid)))[0];
      if (known) {
        out.push(known);
        continue;
      }
      const name = (await t.select({ name: devices.name }).from(devices).where(eq(devices.uuid, uuid)))[0]?.name ?? '';
      const entry = { uuid, name, reason, deniedAt: now };
      await t.insert(deniedDevices).values(entry).onConflictDoNothing();
      out.push(entry);
    }
    return out;
  };
  const lotOf = async (t: Db, name: string): Promise<Lot | undefined> =>
    (await t.select().from(lots).where(eq(lots.name, name)))[0] as Lot | undefined;
  const mustLot = async (name: string): Promise<Lot> => {
    const lot = await lotOf(db, name);
    if (!lot) throw new KilnError('not_found', `no lot named ${name}`);
    return lot;
  };
  const approvalOf = async (t: Db, uuid: string): Promise<Approval | undefined> =>
    (await t.select().from(approvals).where(eq(approvals.uuid, uuid)))[0] as Approval | undefined;
  const revocations = async (t: Db, cond: SQL | undefined): Promise<Revocation[]> =>
    (await t
      .select({
        serial: certificates.serial,
        uuid: certificates.uuid,
        revokedAt: certificates.revokedAt,
        reason: certificates.revocationReason,
      })
      .from(certificates)
      .where(cond)) as Revocation[];
  const pauseOf = async (now: Date): Promise<UpstreamPause | undefined> =>
    (
      await db
        .select({ until: upstreamPause.until, reason: upstreamPause.reason, pausedAt: upstreamPause.pausedAt })
        .from(upstreamPause)
        .where(gt(upstreamPause.until, now))
    )[0];

  const store: Store = {
    recordIssuance: (cert, o) => writer.record(cert, o),
    async allowRekey(uuids, reason, now) {
      return tx(async (t) => {
        const found = (await t.select({ uuid: devices.uuid }).from(devices).where(inArray(devices.uuid, uuids))).map((r) => r.uuid);
        const missing = missingOf(uuids, found);
        if (missing.length) throw new KilnError('not_found', `unknown device ${missing.join(', ')}`);
        const out: RekeyAllowance[] = [];
        for (const uuid of uuids) {
          const entry = { uuid, allowedAt: now, reason, usedAt: null, usedSerial: null };
          await t
            .insert(rekeyAllowances)
            .values(entry)
            .onConflictDoUpdate({ target: rekeyAllowances.uuid, set: { allowedAt: now, reason, usedAt: null, usedSerial: null } });
          out.push(entry);
        }
        return out;
      });
    },
    async rekeyAllowance(uuid) {
      return (await db.select().from(rekeyAllowances).where(eq(rekeyAllowances.uuid, uuid)))[0];
    },
    async findDenied(uuid) {
      return (await db.select().from(deniedDevices).where(eq(deniedDevices.uuid, uuid)))[0];
    },
    async getDevice(uuid) {
      return (await db.select().from(devices).where(eq(devices.uuid, uuid)))[0];
    },
    async listDevices(page) {
      return db.select().from(devices).orderBy(desc(devices.lastRegisteredAt), devices.uuid).limit(page.limit).offset(page.offset);
    },
    async certificatesOf(uuid) {
      return db.select().from(certificates).where(eq(certificates.uuid, uuid)).orderBy(desc(certificates.issuedAt));
    },
    async certificate(serial) {
      return (await db.select().from(certificates).where(eq(certificates.serial, serial)))[0];
    },
    async deny(uuids, reason, now) {
      return tx((t) => denyIn(t, uuids, reason, now));
    },
    async deleteDevices(uuids, reason, now) {
      await tx(async (t) => {
        const found = (await t.select({ uuid: devices.uuid }).from(devices).where(inArray(devices.uuid, uuids))).map((r) => r.uuid);
        const missing = missingOf(uuids, found);
        if (missing.length) throw new KilnError('not_found', `unknown device ${missing.join(', ')}`);
        await denyIn(t, uuids, reason, now);
        await t.delete(devices).where(inArray(devices.uuid, uuids));
      });
    },
    async listDenied(page) {
      return db
        .select()
        .from(deniedDevices)
        .orderBy(desc(deniedDevices.deniedAt), deniedDevices.uuid)
        .limit(page.limit)
        .offset(page.offset);
    },
    async deleteDenied(uuids) {
      await tx(async (t) => {
        const found = (await t.select({ uuid: deniedDevices.uuid }).from(deniedDevices).where(inArray(deniedDevices.uuid, uuids))).map(
          (r) => r.uuid,
        );
        const missing = missingOf(uuids, found);
        if (missing.length) throw new KilnError('not_found', `not on the deny-list: ${missing.join(', ')}`);
        await t.delete(deniedDevices).where(inArray(deniedDevices.uuid, uuids));
      });
    },
    async dueOutbox(now, limit) {
      // claimed: skipped by the other replicas, and due again when the lease runs out
      const due = db
        .select({ serial: outbox.serial })
        .from(outbox)
        .where(and(eq(outbox.status, 'pending'), lte(outbox.nextAttemptAt, now)))
        .orderBy(outbox.nextAttemptAt)
        .limit(limit)
        .for('update', { skipLocked: true });
      const claimed = await db
        .update(outbox)
        .set({ nextAttemptAt: new Date(now.getTime() + leaseMs) })
        .where(inArray(outbox.serial, due))
        .returning();
      return (claimed as OutboxEntry[]).sort((x, y) => x.createdAt.getTime() - y.createdAt.getTime());
    },
    async updateOutbox(serial, change) {
      await db.update(outbox).set(change).where(eq(outbox.serial, serial));
    },
    async outboxSummary(now) {
      const counts = await db.select({ status: outbox.status, n: count() }).from(outbox).groupBy(outbox.status);
      const oldest = (
        await db
          .select({ at: min(outbox.createdAt) })
          .from(outbox)
          .where(eq(outbox.status, 'pending'))
      )[0]?.at;
      const n = (st: string): number => Number(counts.find((c) => c.status === st)?.n ?? 0);
      return {
        pending: n('pending'),
        failed: n('failed'),
        delivered: n('delivered'),
        oldestPendingAgeSeconds: oldest ? Math.max(0, Math.round((now.getTime() - new Date(oldest).getTime()) / 1000)) : null,
        paused: (await pauseOf(now)) ?? null,
      };
    },
    async listOutbox(filter, page) {
      const q = db.select().from(outbox);
      return (await (filter.status ? q.where(eq(outbox.status, filter.status)) : q)
        .orderBy(desc(outbox.createdAt))
        .limit(page.limit)
        .offset(page.offset)) as OutboxEntry[];
    },
    async retryOutbox(uuids, now) {
      return tx(async (t) => {
        if (uuids) {
          const found = (await t.selectDistinct({ uuid: outbox.uuid }).from(outbox).where(inArray(outbox.uuid, uuids))).map((r) => r.uuid);
          const missing = missingOf(uuids, found);
          if (missing.length) throw new KilnError('not_found', `no upstream delivery for ${missing.join(', ')}`);
        }
        await t.delete(upstreamPause);
        const undelivered = inArray(outbox.status, ['failed', 'pending']);
        const changed = await t
          .update(outbox)
          .set({ status: 'pending', attemptsBeforeRetry: sql`${outbox.attempts}`, nextAttemptAt: now })
          .where(uuids ? and(undelivered, inArray(outbox.uuid, uuids)) : undelivered)
          .returning({ serial: outbox.serial });
        return changed.length;
      });
    },
    async pauseUpstream(p) {
      await db
        .insert(upstreamPause)
        .values({ id: 1, ...p })
        .onConflictDoUpdate({ target: upstreamPause.id, set: p });
    },
    async upstreamPause(now) {
      return pauseOf(now);
    },
    async createLot(lot) {
      const made = await db.insert(lots).values(lot).onConflictDoNothing().returning();
      if (!made.length) throw new KilnError('conflict', `lot ${lot.name} already exists`);
      return made[0] as Lot;
    },
    async getLot(name) {
      return lotOf(db, name);
    },
    async lotByTokenHash(hash) {
      return (await db.select().from(lots).where(eq(lots.tokenSha256, hash)))[0] as Lot | undefined;
    },
    async listLots() {
      return (await db.select().from(lots).orderBy(desc(lots.createdAt), lots.name)) as Lot[];
    },
    async revokeLot(name, now) {
      const lot = await mustLot(name);
      if (!lot.revokedAt)
        await db
          .update(lots)
          .set({ revokedAt: now })
          .where(and(eq(lots.name, name), isNull(lots.revokedAt)));
      return (await lotOf(db, name))!;
    },
    async rotateLotToken(name, hash) {
      await mustLot(name);
      await db.update(lots).set({ tokenSha256: hash }).where(eq(lots.name, name));
      return (await lotOf(db, name))!;
    },
    async approval(uuid) {
      return approvalOf(db, uuid);
    },
    async notePending(a, now) {
      await db
        .insert(approvals)
        .values({ ...a, firstSeen: now, lastSeen: now, attempts: 1, status: 'pending', decidedAt: null })
        .onConflictDoUpdate({
          target: approvals.uuid,
          set: { lastSeen: now, attempts: sql`${approvals.attempts} + 1`, clientAddress: a.clientAddress },
        });
      return (await approvalOf(db, a.uuid))!;
    },
    async listApprovals(filter, page) {
      const q = db.select().from(approvals);
      return (await (filter.status ? q.where(eq(approvals.status, filter.status)) : q)
        .orderBy(desc(approvals.lastSeen), approvals.uuid)
        .limit(page.limit)
        .offset(page.offset)) as Approval[];
    },
    async decideApprovals(uuids, decision, now) {
      return tx(async (t) => {
        const found = (await t.select({ uuid: approvals.uuid }).from(approvals).where(inArray(approvals.uuid, uuids))).map((r) => r.uuid);
        const missing = missingOf(uuids, found);
        if (missing.length) throw new KilnError('not_found', `no approval request for ${missing.join(', ')}`);
        await t.update(approvals).set({ status: decision, decidedAt: now }).where(inArray(approvals.uuid, uuids));
        if (decision === 'rejected') await denyIn(t, uuids, 'rejected by an operator', now);
        const out: Approval[] = [];
        for (const u of uuids) out.push((await approvalOf(t, u))!);
        return out;
      });
    },
    async preauthorization(uuid) {
      return (await db.select().from(preauthorized).where(eq(preauthorized.uuid, uuid)))[0];
    },
    async importPreauthorized(rows, now) {
      await tx(async (t) => {
        for (let i = 0; i < rows.length; i += 1000) {
          const chunk = rows.slice(i, i + 1000).map((r) => ({ ...r, createdAt: now }));
          await t
            .insert(preauthorized)
            .values(chunk)
            .onConflictDoUpdate({
              target: preauthorized.uuid,
              set: {
                keySha256: sql`excluded.key_sha256`,
                hardwareId: sql`excluded.hardware_id`,
                name: sql`excluded.name`,
                lot: sql`excluded.lot`,
                createdAt: sql`excluded.created_at`,
              },
            });
        }
      });
      return rows.length;
    },
    async createAdminToken(t) {
      const made = await db
        .insert(adminTokens)
        .values({ ...t, revokedAt: null })
        .onConflictDoNothing({ target: adminTokens.name })
        .returning();
      if (!made.length) throw new KilnError('conflict', `an admin token named ${t.name} already exists`);
      return { ...t, revokedAt: null };
    },
    async adminTokenByHash(hash) {
      return (await db.select().from(adminTokens).where(eq(adminTokens.tokenSha256, hash)))[0] as AdminToken | undefined;
    },
    async listAdminTokens() {
      return (await db.select().from(adminTokens).orderBy(adminTokens.name)) as AdminToken[];
    },
    async revokeAdminToken(name, now) {
      const found = (await db.select().from(adminTokens).where(eq(adminTokens.name, name)))[0];
      if (!found) throw new KilnError('not_found', `no admin token named ${name}`);
      if (!found.revokedAt) await db.update(adminTokens).set({ revokedAt: now }).where(eq(adminTokens.name, name));
      return (await db.select().from(adminTokens).where(eq(adminTokens.name, name)))[0] as AdminToken;
    },
    async appendAudit(entry) {
      await db.insert(auditLog).values(entry);
    },
    async listAudit(page) {
      return (await db.select().from(auditLog).orderBy(desc(auditLog.id)).limit(page.limit).offset(page.offset)) as AuditEntry[];
    },
    async revoke(target, reason, now) {
      return tx(async (t) => {
        const serials = new Set<string>();
        for (const uuid of target.uuids ?? []) {
          const certs = await t.select({ serial: certificates.serial }).from(certificates).where(eq(certificates.uuid, uuid));
          if (!certs.length) throw new KilnError('not_found', `device ${uuid} has no certificate`);
          for (const c of certs) serials.add(c.serial);
        }
        for (const serial of target.serials ?? []) {
          if (!(await t.select({ serial: certificates.serial }).from(certificates).where(eq(certificates.serial, serial))).length)
            throw new KilnError('not_found', `no certificate with serial ${serial}`);
          serials.add(serial);
        }
        const list = [...serials];
        await t
          .update(certificates)
          .set({ revokedAt: now, revocationReason: reason })
          .where(and(inArray(certificates.serial, list), isNull(certificates.revokedAt)));
        await t.execute(
          sql`INSERT INTO crl_state (id, number, revision) VALUES (1, 0, 1) ON CONFLICT (id) DO UPDATE SET revision = crl_state.revision + 1`,
        );
        return revocations(t, inArray(certificates.serial, list));
      });
    },
    async revokedCertificates() {
      return revocations(db, isNotNull(certificates.revokedAt));
    },
    async crlRevision() {
      return (await db.select({ r: crlState.revision }).from(crlState).where(eq(crlState.id, 1)))[0]?.r ?? 0;
    },
    async nextCrlNumber() {
      const r = await pool.query<{ number: number }>(
        'INSERT INTO crl_state (id, number, revision) VALUES (1, 1, 0) ON CONFLICT (id) DO UPDATE SET number = crl_state.number + 1 RETURNING number',
      );
      return r.rows[0].number;
    },
    async publishedCrl() {
      return storedCrl((await db.select().from(crlState).where(eq(crlState.id, 1)))[0]);
    },
    async publishedCrlNumber() {
      return (
        (
          await db
            .select({ n: crlState.number })
            .from(crlState)
            .where(and(eq(crlState.id, 1), isNotNull(crlState.der)))
        )[0]?.n ?? 0
      );
    },
    async claimCrl(now, until) {
      const r = await pool.query(
        `INSERT INTO crl_state (id, number, revision, making_until) VALUES (1, 0, 0, $1)
         ON CONFLICT (id) DO UPDATE SET making_until = excluded.making_until
         WHERE crl_state.making_until IS NULL OR crl_state.making_until <= $2 RETURNING id`,
        [until, now],
      );
      return r.rowCount === 1;
    },
    async saveCrl(c) {
      await db.update(crlState).set(crlColumns(c)).where(eq(crlState.id, 1));
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async readiness(): Promise<ReadinessCheck[]> {
      const started = performance.now();
      try {
        await pool.query('SELECT 1');
        return [{ name: 'registry', ok: true, detail: `${where}: round trip ${(performance.now() - started).toFixed(1)} ms` }];
      } catch (err) {
        return [{ name: 'registry', ok: false, detail: `${where}: ${pgError(err, where, 'use').message}` }];
      }
    },
    writerStats() {
      return { state: 'running', queueDepth: writer.stats().queueDepth, restarts: 0 };
    },
    writerThreadForTests() {
      return undefined;
    },
    async close() {
      await pool.end();
    },
  };
  return guardStore(store, (err) => pgError(err, where, 'use'));
}

/** Runs the migrations under a session advisory lock: replicas starting together migrate once. */
async function migrateLocked(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      const schema = (await client.query<{ s: string }>('SELECT current_schema() AS s')).rows[0].s;
      await migrate(drizzle(client), {
        migrationsFolder: join(packageRoot(), 'server/db/pg/migrations'),
        // the bookkeeping table beside the tables it describes: one schema is one registry
        migrationsSchema: schema,
      });
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  } finally {
    client.release();
  }
}
