// The Store conformance suite: every registry behaviour, run against SQLite and the real
// PostgreSQL server (each test in its own schema), so the two engines cannot drift.
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KilnError } from '../../pki/errors.js';
import { pgSchema } from '../../test/helpers/pg.js';
import { tempDir } from '../../test/helpers/pki.js';
import { openStore } from './open.js';
import { openSqliteStore } from './sqlite/store.js';
import type { IssuedCertificate, NewLot, RecordOptions, Store } from './store.js';

interface Fixture {
  store: Store;
  /** Runs SQL on the registry behind the store's back (to prove what the engine refuses). */
  raw(sql: string): Promise<void>;
  close(): Promise<void>;
}

const engines: [string, () => Promise<Fixture>][] = [
  [
    'sqlite',
    async () => {
      const path = join(tempDir(), 'kiln.db');
      const store = openSqliteStore(path);
      return {
        store,
        raw: async (sql) => {
          const db = new Database(path);
          try {
            db.exec(sql);
          } finally {
            db.close();
          }
        },
        close: () => store.close(),
      };
    },
  ],
  [
    'postgres',
    async () => {
      const s = await pgSchema();
      const store = await openStore({ kind: 'postgres', url: s.url });
      return {
        store,
        raw: async (sql) => void (await s.query(sql)),
        close: async () => {
          await store.close();
          await s.drop();
        },
      };
    },
  ],
];

const OPEN: RecordOptions = { rejectReregistration: false, rekey: 'deny' };
const hex = (): string => randomUUID().replace(/-/g, '');

const cert = (uuid: string, o: Partial<IssuedCertificate> = {}): IssuedCertificate => {
  const at = o.issuedAt ?? new Date();
  return {
    serial: hex(),
    uuid,
    subject: `CN=${uuid}, OU=f`,
    hardwareId: 'hw',
    name: uuid,
    production: false,
    notBefore: at,
    notAfter: new Date(at.getTime() + 86_400_000),
    pem: `PEM ${randomUUID()}`,
    issuedAt: at,
    clientAddress: '127.0.0.1',
    requestId: 'r',
    keySha256: hex(),
    ...o,
  };
};

const codeOf = async (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => (e instanceof KilnError ? e.code : `not a KilnError: ${String(e)}`),
  );

const messageOf = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'resolved',
    (e: Error) => e.message,
  );

const lot = (name: string, o: Partial<NewLot> = {}): NewLot => ({
  name,
  tokenSha256: hex() + hex(),
  createdAt: new Date(),
  expiresAt: null,
  maxDevices: null,
  hwidPattern: null,
  deviceGroup: null,
  production: 'any',
  approval: 'auto',
  ...o,
});

describe.each(engines)('Store on %s', (_engine, open) => {
  let f: Fixture;
  let s: Store;
  beforeEach(async () => {
    f = await open();
    s = f.store;
  });
  afterEach(async () => {
    await f.close();
  });

  it('ok/records a certificate and its device; reads them back', async () => {
    const uuid = randomUUID();
    const c = cert(uuid, { production: true, hardwareId: 'imx8' });
    expect(await s.recordIssuance(c, OPEN)).toBeUndefined();
    const d = await s.getDevice(uuid);
    expect(d).toMatchObject({
      uuid,
      serial: c.serial,
      hardwareId: 'imx8',
      production: true,
      registrations: 1,
      repeats: 0,
      keySha256: c.keySha256,
    });
    expect(d!.firstRegisteredAt.getTime()).toBe(c.issuedAt.getTime());
    const stored = await s.certificate(c.serial);
    expect(stored).toMatchObject({ serial: c.serial, uuid, pem: c.pem, revokedAt: null, supersededBy: null });
    expect(stored!.notAfter.getTime()).toBe(c.notAfter.getTime());
    expect(await s.certificate('00')).toBeUndefined();
  });

  it('ok/a retry with the same key and subject is a repeat: the current certificate, counted, nothing new', async () => {
    const uuid = randomUUID();
    const c = cert(uuid);
    await s.recordIssuance(c, OPEN);
    const again = await s.recordIssuance({ ...cert(uuid), keySha256: c.keySha256 }, { ...OPEN, rejectReregistration: true });
    expect(again).toEqual({ serial: c.serial, pem: c.pem, delivery: null });
    expect((await s.getDevice(uuid))!.repeats).toBe(1);
    expect(await s.certificatesOf(uuid)).toHaveLength(1);
  });

  it('fail/re-registration refused when asked; a new key refused unless allowed once; allow restores the reference', async () => {
    const uuid = randomUUID();
    await s.recordIssuance(cert(uuid), OPEN);
    expect(await codeOf(s.recordIssuance(cert(uuid), { ...OPEN, rejectReregistration: true }))).toBe('conflict');
    expect(await messageOf(s.recordIssuance(cert(uuid), OPEN))).toMatch(/is registered with another key; .* kilnctl devices allow-rekey/);
    expect(await codeOf(s.allowRekey([randomUUID()], 'x', new Date()))).toBe('not_found');
    await s.allowRekey([uuid], 'new board', new Date());
    const rekeyed = cert(uuid);
    expect(await s.recordIssuance(rekeyed, OPEN)).toBeUndefined();
    expect(await s.rekeyAllowance(uuid)).toMatchObject({ uuid, reason: 'new board', usedSerial: rekeyed.serial });
    expect(await codeOf(s.recordIssuance(cert(uuid), OPEN))).toBe('conflict');
    expect(await s.recordIssuance(cert(uuid), { ...OPEN, rekey: 'allow' })).toBeUndefined();
    expect((await s.getDevice(uuid))!.registrations).toBe(3);
  });

  it('fail/a serial used twice is a conflict', async () => {
    const c = cert(randomUUID());
    await s.recordIssuance(c, OPEN);
    expect(await codeOf(s.recordIssuance(cert(randomUUID(), { serial: c.serial }), OPEN))).toBe('conflict');
  });

  it('ok/deny-list: refused inside the recording, idempotent, listed, lifted; unknown is not_found', async () => {
    const uuid = randomUUID();
    const [d] = await s.deny([uuid], 'stolen', new Date());
    expect(d).toMatchObject({ uuid, reason: 'stolen' });
    expect((await s.deny([uuid], 'again', new Date()))[0].reason).toBe('stolen');
    expect(await messageOf(s.recordIssuance(cert(uuid), OPEN))).toBe(`device ${uuid} is on the deny-list`);
    expect(await s.getDevice(uuid)).toBeUndefined();
    expect((await s.listDenied({ limit: 10, offset: 0 })).map((x) => x.uuid)).toEqual([uuid]);
    expect(await codeOf(s.deleteDenied([uuid, randomUUID()]))).toBe('not_found');
    expect(await s.findDenied(uuid)).toBeDefined();
    await s.deleteDenied([uuid]);
    expect(await s.findDenied(uuid)).toBeUndefined();
  });

  it('ok/delete removes the device, keeps its certificates and denies it; unknown changes nothing', async () => {
    const a = randomUUID();
    const b = randomUUID();
    await s.recordIssuance(cert(a), OPEN);
    await s.recordIssuance(cert(b), OPEN);
    expect(await codeOf(s.deleteDevices([a, randomUUID()], 'x', new Date()))).toBe('not_found');
    expect(await s.getDevice(a)).toBeDefined();
    await s.deleteDevices([a], 'scrapped', new Date());
    expect(await s.getDevice(a)).toBeUndefined();
    expect(await s.certificatesOf(a)).toHaveLength(1);
    expect((await s.findDenied(a))!.reason).toBe('scrapped');
  });

  it('ok/lists page newest first', async () => {
    const t0 = Date.now();
    const uuids = [0, 1, 2].map((i) => {
      const uuid = randomUUID();
      return { uuid, c: cert(uuid, { issuedAt: new Date(t0 + i * 1000) }) };
    });
    for (const u of uuids) await s.recordIssuance(u.c, OPEN);
    expect((await s.listDevices({ limit: 2, offset: 0 })).map((d) => d.uuid)).toEqual([uuids[2].uuid, uuids[1].uuid]);
    expect((await s.listDevices({ limit: 2, offset: 2 })).map((d) => d.uuid)).toEqual([uuids[0].uuid]);
  });

  it('ok/lots: created once, found by name and token hash, revoked, rotated; admission counted exactly', async () => {
    const l = await s.createLot(lot('line-1', { maxDevices: 2 }));
    expect(l).toMatchObject({ name: 'line-1', admitted: 0, revokedAt: null, maxDevices: 2 });
    expect(await codeOf(s.createLot(lot('line-1')))).toBe('conflict');
    expect((await s.lotByTokenHash(l.tokenSha256))?.name).toBe('line-1');
    const a = randomUUID();
    await s.recordIssuance(cert(a, { lot: 'line-1' }), OPEN);
    // the same device again does not count twice
    await s.recordIssuance(cert(a, { lot: 'line-1' }), { ...OPEN, rekey: 'allow' });
    await s.recordIssuance(cert(randomUUID(), { lot: 'line-1' }), OPEN);
    expect((await s.getLot('line-1'))!.admitted).toBe(2);
    expect(await messageOf(s.recordIssuance(cert(randomUUID(), { lot: 'line-1' }), OPEN))).toBe(
      'lot line-1 is full: 2 of 2 devices enrolled',
    );
    expect((await s.getDevice(a))!.lot).toBe('line-1');
    const rotated = await s.rotateLotToken('line-1', 'ff'.repeat(32));
    expect(rotated.tokenSha256).toBe('ff'.repeat(32));
    expect(await s.lotByTokenHash(l.tokenSha256)).toBeUndefined();
    const revoked = await s.revokeLot('line-1', new Date());
    expect(revoked.revokedAt).toBeInstanceOf(Date);
    expect(await codeOf(s.recordIssuance(cert(randomUUID(), { lot: 'line-1' }), OPEN))).toBe('unauthorized');
    expect(await codeOf(s.revokeLot('nope', new Date()))).toBe('not_found');
    expect(await codeOf(s.rotateLotToken('nope', 'aa'))).toBe('not_found');
    expect((await s.listLots()).map((x) => x.name)).toEqual(['line-1']);
  });

  it('fail/an expired lot refuses with its expiry time', async () => {
    const expiresAt = new Date(Date.now() - 60_000);
    await s.createLot(lot('old', { expiresAt }));
    expect(await messageOf(s.recordIssuance(cert(randomUUID(), { lot: 'old' }), OPEN))).toBe(
      `lot old expired at ${expiresAt.toISOString()}`,
    );
  });

  it('ok/a full lot never over-admits under concurrent records', async () => {
    await s.createLot(lot('small', { maxDevices: 5 }));
    const results = await Promise.all(
      Array.from({ length: 20 }, () => codeOf(s.recordIssuance(cert(randomUUID(), { lot: 'small' }), OPEN))),
    );
    expect(results.filter((r) => r === undefined)).toHaveLength(5);
    expect(results.filter((r) => r === 'denied')).toHaveLength(15);
    expect((await s.getLot('small'))!.admitted).toBe(5);
  });

  it('ok/approvals: pending noted and counted, listed, decided; a rejection denies; unknown is not_found', async () => {
    const a = randomUUID();
    const b = randomUUID();
    const base = { keySha256: 'k', hardwareId: 'hw', name: 'n', clientAddress: '10.0.0.1', lot: 'l' };
    await s.notePending({ uuid: a, ...base }, new Date());
    const again = await s.notePending({ uuid: a, ...base, clientAddress: '10.0.0.2' }, new Date());
    expect(again).toMatchObject({ uuid: a, attempts: 2, status: 'pending', clientAddress: '10.0.0.2' });
    await s.notePending({ uuid: b, ...base }, new Date());
    expect(await s.listApprovals({ status: 'pending' }, { limit: 10, offset: 0 })).toHaveLength(2);
    expect(await codeOf(s.decideApprovals([a, randomUUID()], 'approved', new Date()))).toBe('not_found');
    expect((await s.approval(a))!.status).toBe('pending');
    expect((await s.decideApprovals([a], 'approved', new Date()))[0].status).toBe('approved');
    await s.decideApprovals([b], 'rejected', new Date());
    expect((await s.findDenied(b))!.reason).toBe('rejected by an operator');
    expect((await s.listApprovals({ status: 'approved' }, { limit: 10, offset: 0 })).map((x) => x.uuid)).toEqual([a]);
  });

  it('ok/pre-authorizations are imported, replaced and read', async () => {
    const a = randomUUID();
    expect(await s.importPreauthorized([{ uuid: a, keySha256: null, hardwareId: 'hw', name: null, lot: null }], new Date())).toBe(1);
    await s.importPreauthorized([{ uuid: a, keySha256: 'k', hardwareId: null, name: 'n', lot: 'l' }], new Date());
    expect(await s.preauthorization(a)).toMatchObject({ uuid: a, keySha256: 'k', hardwareId: null, name: 'n', lot: 'l' });
    expect(await s.preauthorization(randomUUID())).toBeUndefined();
  });

  it('ok/admin tokens: created once, found by hash, listed, revoked; the audit log is append-only', async () => {
    const t = { name: 'ops', role: 'operator' as const, tokenSha256: 'aa'.repeat(32), createdAt: new Date() };
    await s.createAdminToken(t);
    expect(await codeOf(s.createAdminToken(t))).toBe('conflict');
    expect((await s.adminTokenByHash(t.tokenSha256))?.name).toBe('ops');
    expect((await s.listAdminTokens()).map((x) => x.role)).toEqual(['operator']);
    expect((await s.revokeAdminToken('ops', new Date())).revokedAt).toBeInstanceOf(Date);
    expect(await codeOf(s.revokeAdminToken('nobody', new Date()))).toBe('not_found');
    const entry = { at: new Date(), actor: 'local:me', action: 'x', target: 't', address: 'local', requestId: 'r', detail: '{}' };
    await s.appendAudit(entry);
    await s.appendAudit({ ...entry, action: 'y' });
    expect((await s.listAudit({ limit: 10, offset: 0 })).map((e) => e.action)).toEqual(['y', 'x']);
    await expect(f.raw("UPDATE audit_log SET actor = 'someone else'")).rejects.toThrow(/append-only/);
    await expect(f.raw('DELETE FROM audit_log')).rejects.toThrow(/append-only/);
    expect(await s.listAudit({ limit: 10, offset: 0 })).toHaveLength(2);
  });

  it('ok/revocation by UUID and serial, with the first time and reason kept; the CRL revision and number move', async () => {
    const a = randomUUID();
    const c1 = cert(a);
    const c2 = cert(randomUUID());
    await s.recordIssuance(c1, OPEN);
    await s.recordIssuance(c2, OPEN);
    const r0 = await s.crlRevision();
    expect(await codeOf(s.revoke({ uuids: [randomUUID()] }, 'unspecified', new Date()))).toBe('not_found');
    expect(await codeOf(s.revoke({ serials: ['00ff'] }, 'unspecified', new Date()))).toBe('not_found');
    expect(await s.crlRevision()).toBe(r0);
    const first = new Date(Date.now() - 1000);
    await s.revoke({ uuids: [a] }, 'keyCompromise', first);
    const [again] = await s.revoke({ serials: [c1.serial] }, 'superseded', new Date());
    expect(again).toMatchObject({ serial: c1.serial, uuid: a, reason: 'keyCompromise' });
    expect(again.revokedAt.getTime()).toBe(first.getTime());
    expect(await s.crlRevision()).toBe(r0 + 2);
    expect((await s.revokedCertificates()).map((x) => x.serial)).toEqual([c1.serial]);
    const n1 = await s.nextCrlNumber();
    expect(await s.nextCrlNumber()).toBe(n1 + 1);
  });

  it('ok/renewal: supersedes the current certificate; a lost answer is repeated; a stale or revoked one is refused', async () => {
    const uuid = randomUUID();
    const c1 = cert(uuid);
    await s.recordIssuance(c1, OPEN);
    const c2 = cert(uuid, { renews: c1.serial });
    expect(await s.recordIssuance(c2, OPEN)).toBeUndefined();
    expect((await s.certificate(c1.serial))!.supersededBy).toBe(c2.serial);
    expect((await s.getDevice(uuid))!.serial).toBe(c2.serial);
    // the same renewal again (its answer lost): the certificate it made
    expect(await s.recordIssuance(cert(uuid, { renews: c1.serial, keySha256: c2.keySha256 }), OPEN)).toMatchObject({ serial: c2.serial });
    expect(await messageOf(s.recordIssuance(cert(uuid, { renews: c1.serial }), OPEN))).toBe(
      `certificate ${c1.serial} was replaced by ${c2.serial}: renew with the current certificate`,
    );
    // renewing with the same key is a new certificate, not a repeat
    const c3 = cert(uuid, { renews: c2.serial, keySha256: c2.keySha256 });
    expect(await s.recordIssuance(c3, OPEN)).toBeUndefined();
    await s.revoke({ serials: [c3.serial] }, 'keyCompromise', new Date());
    expect(await messageOf(s.recordIssuance(cert(uuid, { renews: c3.serial }), OPEN))).toBe(`certificate ${c3.serial} is revoked`);
    expect(await messageOf(s.recordIssuance(cert(randomUUID(), { renews: c3.serial }), OPEN))).toMatch(/is not registered$/);
  });

  it('ok/the outbox: queued with the record, due, updated, summarised, listed, retried; pauses', async () => {
    const uuid = randomUUID();
    const c = cert(uuid, { upstreamBody: '{"client.pem":"x"}' });
    await s.recordIssuance(c, OPEN);
    const now = new Date(Date.now() + 1000);
    const [due] = await s.dueOutbox(now, 10);
    expect(due).toMatchObject({ serial: c.serial, uuid, body: c.upstreamBody, status: 'pending', attempts: 0 });
    expect(await s.recordIssuance({ ...cert(uuid), keySha256: c.keySha256 }, OPEN)).toMatchObject({ delivery: 'pending' });
    await s.updateOutbox(c.serial, { status: 'failed', attempts: 5, nextAttemptAt: now, lastError: 'HTTP 500', deliveredAt: null });
    const summary = await s.outboxSummary(now);
    expect(summary).toMatchObject({ pending: 0, failed: 1, delivered: 0, paused: null });
    expect((await s.listOutbox({ status: 'failed' }, { limit: 10, offset: 0 }))[0]).toMatchObject({ lastError: 'HTTP 500' });
    expect(await codeOf(s.retryOutbox([randomUUID()], now))).toBe('not_found');
    await s.pauseUpstream({ until: new Date(Date.now() + 60_000), reason: 'HTTP 401', pausedAt: new Date() });
    expect((await s.upstreamPause(new Date()))?.reason).toBe('HTTP 401');
    expect(await s.retryOutbox([uuid], now)).toBe(1);
    expect(await s.upstreamPause(new Date())).toBeUndefined();
    const [retried] = await s.listOutbox({ status: 'pending' }, { limit: 10, offset: 0 });
    expect(retried).toMatchObject({ attempts: 5, attemptsBeforeRetry: 5, lastError: 'HTTP 500' });
    await s.updateOutbox(c.serial, { status: 'delivered', attempts: 6, nextAttemptAt: now, lastError: '', deliveredAt: now });
    expect((await s.outboxSummary(now)).delivered).toBe(1);
    expect(await s.dueOutbox(new Date(Date.now() + 3_600_000), 10)).toEqual([]);
  });

  it('ok/the shared CRL: one claim at a time (until it runs out or the CRL is saved), then read by all', async () => {
    const now = new Date();
    expect(await s.publishedCrl()).toBeUndefined();
    expect(await s.publishedCrlNumber()).toBe(0);
    expect(await s.claimCrl(now, new Date(now.getTime() + 30_000))).toBe(true);
    expect(await s.claimCrl(now, new Date(now.getTime() + 30_000))).toBe(false);
    expect(await s.claimCrl(new Date(now.getTime() + 31_000), new Date(now.getTime() + 60_000))).toBe(true);
    const crl = {
      der: Buffer.from([0x30, 0x00]),
      number: 7,
      revision: 3,
      thisUpdate: now,
      nextUpdate: new Date(now.getTime() + 3_600_000),
      entries: 2,
    };
    await s.nextCrlNumber();
    await s.saveCrl({ ...crl, number: await s.nextCrlNumber() });
    const stored = await s.publishedCrl();
    expect(stored).toMatchObject({ revision: 3, entries: 2, number: 2 });
    expect(await s.publishedCrlNumber()).toBe(2);
    expect(stored!.der.equals(crl.der)).toBe(true);
    expect(stored!.nextUpdate.getTime()).toBe(crl.nextUpdate.getTime());
    // saving lets the claim go
    expect(await s.claimCrl(now, new Date(now.getTime() + 30_000))).toBe(true);
  });

  it('ok/readiness names the registry; ping answers', async () => {
    await s.ping();
    const checks = await s.readiness();
    expect(checks.find((c) => c.name === 'registry')?.ok).toBe(true);
  });
});
