import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/pki.js';
import { KilnError } from '../../../pki/errors.js';
import type { IssuedCertificate, Store } from '../store.js';
import { ownPolicy, SCHED_BATCH, SCHED_OTHER, threadPolicies } from '../../../test/helpers/sched.js';
import { openSqliteStore } from './store.js';

const catchError = (fn: () => unknown): KilnError => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(KilnError);
    return err as KilnError;
  }
  throw new Error('expected an error');
};

const cert = (uuid: string, serial = randomUUID().replace(/-/g, ''), issuedAt = new Date()): IssuedCertificate => ({
  serial,
  uuid,
  subject: `CN=${uuid}, OU=f`,
  hardwareId: 'hw',
  name: uuid,
  production: false,
  notBefore: issuedAt,
  notAfter: new Date(issuedAt.getTime() + 1000),
  pem: 'PEM',
  issuedAt,
  clientAddress: '127.0.0.1',
  requestId: 'r',
  keySha256: randomUUID(),
});

const codeOf = async (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => (e as KilnError).code,
  );

describe('SQLite store', () => {
  const open: Store[] = [];
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });
  const fresh = (path = join(tempDir(), 'kiln.db')): Store => {
    const s = openSqliteStore(path);
    open.push(s);
    return s;
  };

  it('ok/records survive closing and reopening the file', async () => {
    const path = join(tempDir(), 'kiln.db');
    const s = fresh(path);
    const uuid = randomUUID();
    await s.recordIssuance(cert(uuid, 'aa01'), { rejectReregistration: false, rekey: 'allow' });
    await s.close();
    const again = fresh(path);
    expect(await again.getDevice(uuid)).toMatchObject({ uuid, serial: 'aa01', registrations: 1 });
    expect((await again.certificatesOf(uuid))[0].issuedAt).toBeInstanceOf(Date);
  });

  it('fail/denied UUID is refused inside the transaction, nothing written', async () => {
    const s = fresh();
    const uuid = randomUUID();
    await s.deny([uuid], 'r', new Date());
    expect(await codeOf(s.recordIssuance(cert(uuid), { rejectReregistration: false, rekey: 'allow' }))).toBe('denied');
    expect(await s.certificatesOf(uuid)).toEqual([]);
  });

  it('ok/group commit: concurrent records share a transaction; a refused one fails alone', async () => {
    const path = join(tempDir(), 'kiln.db');
    const s = fresh(path);
    const denied = randomUUID();
    await s.deny([denied], 'r', new Date());
    const ids = Array.from({ length: 50 }, () => randomUUID());
    const results = await Promise.allSettled(
      [...ids.slice(0, 25), denied, ...ids.slice(25)].map((u) =>
        s.recordIssuance(cert(u), { rejectReregistration: false, rekey: 'allow' }),
      ),
    );
    expect(results.filter((r) => r.status === 'rejected').map((r) => ((r as PromiseRejectedResult).reason as KilnError).code)).toEqual([
      'denied',
    ]);
    await s.close();
    const again = fresh(path);
    expect(await again.listDevices({ limit: 100, offset: 0 })).toHaveLength(50);
    expect(await again.certificatesOf(denied)).toEqual([]);
  });

  it('fail/a statement failing half-way through one record rolls back that record alone, in both writers', async () => {
    for (const writer of ['inline', 'worker'] as const) {
      const path = join(tempDir(), 'kiln.db');
      const s = openSqliteStore(path, { writer });
      open.push(s);
      const broken = randomUUID();
      // the certificate row goes in, then the device upsert fails: no read before could have known
      const side = new Database(path);
      side.exec(
        `CREATE TRIGGER t_break BEFORE INSERT ON devices WHEN NEW.uuid = '${broken}' BEGIN SELECT RAISE(ABORT, 'disk says no'); END`,
      );
      side.close();
      const ids = Array.from({ length: 20 }, () => randomUUID());
      const all = [...ids.slice(0, 10), broken, ...ids.slice(10)];
      const results = await Promise.allSettled(all.map((u) => s.recordIssuance(cert(u), { rejectReregistration: false, rekey: 'allow' })));
      expect(results.map((r) => r.status === 'rejected' && ((r as PromiseRejectedResult).reason as KilnError).code)).toEqual(
        all.map((u) => (u === broken ? 'unavailable' : false)),
      );
      expect(await s.certificatesOf(broken)).toEqual([]);
      expect(await s.listDevices({ limit: 100, offset: 0 })).toHaveLength(20);
      for (const u of ids) expect(await s.certificatesOf(u)).toHaveLength(1);
    }
  });

  it('ok/the writer thread waits for another process writing (kilnctl devices deny) instead of failing the batch', async () => {
    const path = join(tempDir(), 'kiln.db');
    const s = openSqliteStore(path, { writer: 'worker' });
    open.push(s);
    const other = new Database(path);
    other.pragma('busy_timeout = 5000');
    other.exec('BEGIN IMMEDIATE');
    other
      .prepare('INSERT INTO denied_devices (uuid, name, reason, denied_at) VALUES (?, ?, ?, ?)')
      .run(randomUUID(), 'n', 'cli', Date.now());
    const uuid = randomUUID();
    const recorded = s.recordIssuance(cert(uuid), { rejectReregistration: false, rekey: 'allow' });
    await new Promise((r) => setTimeout(r, 300));
    other.exec('COMMIT');
    other.close();
    await expect(recorded).resolves.toBeUndefined();
    expect(await s.certificatesOf(uuid)).toHaveLength(1);
  });

  it('ok/the writer and checkpoint threads are SCHED_BATCH: waking them never preempts the event loop', async () => {
    const batch = (): number => threadPolicies().filter((p) => p === SCHED_BATCH).length;
    const before = batch();
    const s = openSqliteStore(join(tempDir(), 'kiln.db'), { writer: 'worker' });
    open.push(s);
    await s.recordIssuance(cert(randomUUID()), { rejectReregistration: false, rekey: 'allow' }); // the writer is up, and started the checkpointer
    const deadline = Date.now() + 3000;
    while (batch() < before + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(batch()).toBe(before + 2);
    expect(ownPolicy()).toBe(SCHED_OTHER);
  });

  it('ok/the writer thread hands its commits to the WAL in a few writes, not two per frame (WAL buffer)', async () => {
    const s = openSqliteStore(join(tempDir(), 'kiln.db'), { writer: 'worker' });
    open.push(s);
    await s.recordIssuance(cert(randomUUID()), { rejectReregistration: false, rekey: 'allow' }); // the writer is up
    // write system calls of the whole process, over 20 commits of 10 records: frame by frame that
    // is ~60 writes a commit; buffered, one or two, beside the wake-ups between the threads
    const writes = (): number => Number(/syscw:\s+(\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))![1]);
    const before = writes();
    for (let wave = 0; wave < 20; wave++) {
      await Promise.all(
        Array.from({ length: 10 }, () =>
          s.recordIssuance({ ...cert(randomUUID()), pem: 'P'.repeat(900) }, { rejectReregistration: false, rekey: 'allow' }),
        ),
      );
    }
    expect(writes() - before).toBeLessThan(20 * 10);
  });

  it('ok/with the writer thread, WAL pages reach the database file while the server runs (checkpoint thread)', async () => {
    const path = join(tempDir(), 'kiln.db');
    const s = openSqliteStore(path, { writer: 'worker' });
    open.push(s);
    const before = statSync(path).size;
    await Promise.all(
      Array.from({ length: 300 }, () =>
        s.recordIssuance({ ...cert(randomUUID()), pem: 'P'.repeat(900) }, { rejectReregistration: false, rekey: 'allow' }),
      ),
    );
    // the writer never checkpoints (wal_autocheckpoint = 0) and 300 records are below SQLite's 1,000-page
    // threshold anyway: only the checkpoint thread moves pages into the database file
    const deadline = Date.now() + 3000;
    while (statSync(path).size <= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(statSync(path).size).toBeGreaterThan(before + 300 * 900);
  });

  it('ok/under a steady stream of records the WAL starts over instead of growing (the writer catches up)', async () => {
    const path = join(tempDir(), 'kiln.db');
    const s = openSqliteStore(path, { writer: 'worker' });
    open.push(s);
    // the WAL header's salt changes each time SQLite starts the WAL over
    const salts = new Set<string>();
    const header = Buffer.alloc(32);
    const readSalt = (): void => {
      if (!existsSync(`${path}-wal`)) return;
      const fd = openSync(`${path}-wal`, 'r');
      if (readSync(fd, header, 0, 32, 0) === 32) salts.add(header.subarray(16, 24).toString('hex'));
      closeSync(fd);
    };
    const sampler = setInterval(readSalt, 20);
    // 64 records always in flight for 2.5 s (ten checkpoint intervals): the writer never idles
    const until = Date.now() + 2500;
    const lane = async (): Promise<void> => {
      while (Date.now() < until)
        await s.recordIssuance({ ...cert(randomUUID()), pem: 'P'.repeat(900) }, { rejectReregistration: false, rekey: 'allow' });
    };
    await Promise.all(Array.from({ length: 64 }, lane));
    clearInterval(sampler);
    // without the catch-up, a checkpoint beside a busy writer never finishes the WAL: one salt, a WAL that only grows
    expect(salts.size).toBeGreaterThanOrEqual(4);
  });

  it('fail/duplicate serial is a conflict', async () => {
    const s = fresh();
    await s.recordIssuance(cert(randomUUID(), 'bb'), { rejectReregistration: false, rekey: 'allow' });
    expect(await codeOf(s.recordIssuance(cert(randomUUID(), 'bb'), { rejectReregistration: false, rekey: 'allow' }))).toBe('conflict');
  });

  it('ok/delete removes the device, keeps its certificates and denies it', async () => {
    const s = fresh();
    const uuid = randomUUID();
    await s.recordIssuance(cert(uuid), { rejectReregistration: false, rekey: 'allow' });
    await s.deleteDevices([uuid], 'deleted', new Date());
    expect(await s.getDevice(uuid)).toBeUndefined();
    expect(await s.certificatesOf(uuid)).toHaveLength(1);
    expect(await s.findDenied(uuid)).toMatchObject({ uuid, name: uuid, reason: 'deleted' });
  });

  it('fail/deleting an unknown device changes nothing', async () => {
    const s = fresh();
    const known = randomUUID();
    await s.recordIssuance(cert(known), { rejectReregistration: false, rekey: 'allow' });
    expect(await codeOf(s.deleteDevices([known, randomUUID()], 'x', new Date()))).toBe('not_found');
    expect(await s.getDevice(known)).toBeDefined();
    expect(await s.findDenied(known)).toBeUndefined();
  });

  it('ok/deny is idempotent; delete-denied lifts it; unknown is not_found', async () => {
    const s = fresh();
    const uuid = randomUUID();
    const first = await s.deny([uuid], 'one', new Date(1000));
    const second = await s.deny([uuid], 'two', new Date(2000));
    expect(second[0]).toEqual(first[0]);
    expect(await s.listDenied({ limit: 10, offset: 0 })).toHaveLength(1);
    await s.deleteDenied([uuid]);
    expect(await s.findDenied(uuid)).toBeUndefined();
    expect(await codeOf(s.deleteDenied([uuid]))).toBe('not_found');
  });

  it('ok/list pages newest first', async () => {
    const s = fresh();
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    for (let i = 0; i < 3; i++)
      await s.recordIssuance(cert(ids[i], undefined, new Date(1000 * (i + 1))), { rejectReregistration: false, rekey: 'allow' });
    expect((await s.listDevices({ limit: 2, offset: 0 })).map((d) => d.uuid)).toEqual([ids[2], ids[1]]);
    expect((await s.listDevices({ limit: 2, offset: 2 })).map((d) => d.uuid)).toEqual([ids[0]]);
  });

  it('fail/a path through a plain file cannot be created (73)', () => {
    const file = join(tempDir(), 'plain-file');
    writeFileSync(file, '');
    const err = catchError(() => openSqliteStore(join(file, 'kiln.db')));
    expect(err.message).toBe(`cannot create ${file}: something of that name is in the way`);
    expect(err.exitCode).toBe(73);
  });

  it('fail/a mkdir under /proc is one error, not a hang (73)', () => {
    const err = catchError(() => openSqliteStore('/proc/nope/kiln.db'));
    expect(err.message).toBe('cannot create /proc/nope: no such file or directory');
    expect(err.exitCode).toBe(73);
  });

  it('fail/create: false opens only an existing registry and creates nothing (66)', () => {
    const path = join(tempDir(), 'sub', 'kiln.db');
    const err = catchError(() => openSqliteStore(path, { create: false }));
    expect(err.exitCode).toBe(66);
    expect(err.message).toMatch(/^no registry at .*kiln\.db/);
    expect(existsSync(join(path, '..'))).toBe(false);
  });

  it('fail/a file that is not SQLite is named (78)', () => {
    const path = join(tempDir(), 'kiln.db');
    writeFileSync(path, 'this is not a database, just some text that is long enough to have a header'.repeat(20));
    const err = catchError(() => openSqliteStore(path, { create: false }));
    expect(err.message).toBe(`${path} is not a SQLite registry`);
    expect(err.exitCode).toBe(78);
  });
});
