// Moving over (issue 20): `kilnctl db copy` of a SQLite registry with certificates,
// denials, outbox rows, lots, approvals and audit entries into an empty PostgreSQL one;
// counts and every row equal on both sides; a non-empty target is refused.
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../server/db/open.js';
import { openSqliteStore } from '../server/db/sqlite/store.js';
import type { Store } from '../server/db/store.js';
import { pgSchema, type PgSchema } from './helpers/pg.js';
import { tempDir } from './helpers/pki.js';
import { kilnctl } from './helpers/proc.js';

let pg: PgSchema;
let path: string;
const uuids: string[] = [];

beforeAll(async () => {
  pg = await pgSchema();
  path = join(tempDir('kiln-copy-'), 'kiln.db');
  const s = openSqliteStore(path);
  const now = Date.now();
  await s.createLot({
    name: 'line-1',
    tokenSha256: 'ab'.repeat(32),
    createdAt: new Date(now),
    expiresAt: null,
    maxDevices: 100,
    hwidPattern: 'imx8*',
    deviceGroup: 'g',
    production: 'required',
    approval: 'auto',
  });
  for (let i = 0; i < 250; i++) {
    const uuid = randomUUID();
    uuids.push(uuid);
    const at = new Date(now - i * 1000);
    await s.recordIssuance(
      {
        serial: randomUUID().replace(/-/g, ''),
        uuid,
        subject: `CN=${uuid}, OU=f, businessCategory=production`,
        hardwareId: 'imx8mm',
        name: `dev-${i}`,
        production: i % 2 === 0,
        notBefore: at,
        notAfter: new Date(at.getTime() + 86_400_000),
        pem: `PEM ${i}`,
        issuedAt: at,
        clientAddress: '10.0.0.1',
        requestId: randomUUID(),
        keySha256: randomUUID().replace(/-/g, ''),
        upstreamBody: i % 5 === 0 ? JSON.stringify({ 'client.pem': `PEM ${i}` }) : undefined,
        lot: i < 50 ? 'line-1' : undefined,
      },
      { rejectReregistration: false, rekey: 'deny' },
    );
  }
  await s.deny(uuids.slice(0, 3), 'stolen', new Date(now));
  await s.revoke({ uuids: uuids.slice(3, 5) }, 'keyCompromise', new Date(now));
  await s.notePending(
    { uuid: randomUUID(), keySha256: 'k', hardwareId: 'hw', name: 'n', clientAddress: '1', lot: 'line-1' },
    new Date(now),
  );
  for (let i = 0; i < 3; i++)
    await s.appendAudit({
      at: new Date(now + i),
      actor: 'local:me',
      action: `a${i}`,
      target: 't',
      address: 'local',
      requestId: 'r',
      detail: '{}',
    });
  await s.close();
});

afterAll(async () => {
  await pg?.drop();
});

const rowsOf = (table: string, key: string): Record<string, unknown>[] => {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare(`SELECT * FROM ${table} ORDER BY ${key}`).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
};

/** A SQLite row in PostgreSQL's types (times in ms, booleans 0/1 there). */
const norm = (row: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(row).map(([k, v]) => [
      k,
      v instanceof Date
        ? v.getTime()
        : typeof v === 'boolean'
          ? Number(v)
          : typeof v === 'string' && /^\d+$/.test(v) && k === 'id'
            ? Number(v)
            : v,
    ]),
  );

describe('kilnctl db copy', () => {
  it('ok/copies every table; counts and every row equal on both sides; the copy serves', async () => {
    const r = kilnctl(['db', 'copy', '--from', `sqlite:${path}`, '--to', pg.url, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { counts: Record<string, number> };
    expect(report.counts).toMatchObject({
      certificates: 250,
      devices: 250,
      denied_devices: 3,
      outbox: 50,
      lots: 1,
      approvals: 1,
      audit_log: 3,
    });
    for (const [table, key] of [
      ['certificates', 'serial'],
      ['devices', 'uuid'],
      ['denied_devices', 'uuid'],
      ['outbox', 'serial'],
      ['lots', 'name'],
      ['approvals', 'uuid'],
      ['audit_log', 'id'],
      ['crl_state', 'id'],
    ]) {
      const source = rowsOf(table, key).map(norm);
      const target = (await pg.query(`SELECT * FROM ${table} ORDER BY ${key}`)).map(norm);
      expect(target, table).toEqual(source);
    }
    // the copy works as a registry: the lot's count, a device, the next audit id
    const store: Store = await openStore({ kind: 'postgres', url: pg.url });
    try {
      expect((await store.getLot('line-1'))!.admitted).toBe(50);
      expect((await store.getDevice(uuids[10]))!.name).toBe('dev-10');
      expect((await store.revokedCertificates()).length).toBe(2);
      await store.appendAudit({ at: new Date(), actor: 'x', action: 'after', target: 't', address: 'a', requestId: 'r', detail: '{}' });
      expect((await store.listAudit({ limit: 1, offset: 0 }))[0]).toMatchObject({ id: 4, action: 'after' });
    } finally {
      await store.close();
    }
  });

  it('fail/a target that is not empty is refused and left as it was (65)', async () => {
    const before = await pg.query<{ n: string }>('SELECT count(*) AS n FROM certificates');
    const r = kilnctl(['db', 'copy', '--from', `sqlite:${path}`, '--to', pg.url]);
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(
      /^kilnctl: postgres:\/\/postgres@127\.0\.0\.1:5432\/test.* is not empty \(lots has 1 rows\): db copy fills an empty registry only\n$/,
    );
    expect(await pg.query('SELECT count(*) AS n FROM certificates')).toEqual(before);
  });

  it('fail/wrong directions and bad URLs are usage or configuration errors', () => {
    expect(kilnctl(['db', 'copy', '--from', pg.url, '--to', pg.url]).code).toBe(64);
    expect(kilnctl(['db', 'copy', '--from', `sqlite:${path}`, '--to', `sqlite:${path}`]).code).toBe(64);
    const bad = kilnctl(['db', 'copy', '--from', `sqlite:${path}`, '--to', 'postgres://nobody:hunter2@127.0.0.1:5432/test']);
    expect(bad.code).toBe(78);
    expect(bad.stderr).not.toContain('hunter2');
    expect(bad.stderr).toContain('nobody:***@');
  });
});
