// The registry on embedded SQLite (better-sqlite3, WAL), through drizzle-orm.
import Database from 'better-sqlite3';
import { desc, eq, inArray } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { KilnError } from '../../../pki/errors.js';
import { packageRoot } from '../../paths.js';
import type { DeniedDevice, Device, IssuedCertificate, Page, RecordOptions, Store } from '../store.js';
import { certificates, deniedDevices, devices } from './schema.js';

export function openSqliteStore(path: string): Store {
  let sqlite: Database.Database;
  try {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    sqlite = new Database(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
  } catch (err) {
    throw new KilnError('config', `cannot open SQLite database ${path}: ${(err as Error).message}`, { cause: err });
  }
  const db = drizzle(sqlite);
  try {
    migrate(db, { migrationsFolder: join(packageRoot(), 'server/db/sqlite/migrations') });
  } catch (err) {
    sqlite.close();
    throw new KilnError('config', `cannot migrate SQLite database ${path}: ${(err as Error).message}`, { cause: err });
  }

  // The hot path (every /sign) uses statements prepared once; drizzle serves the admin paths.
  const hot = {
    denied: sqlite.prepare<[string], { uuid: string; name: string; reason: string; denied_at: number }>(
      'SELECT uuid, name, reason, denied_at FROM denied_devices WHERE uuid = ?',
    ),
    device: sqlite.prepare<[string], { registrations: number }>('SELECT registrations FROM devices WHERE uuid = ?'),
    serialTaken: sqlite.prepare<[string], { one: number }>('SELECT 1 AS one FROM certificates WHERE serial = ?'),
    insertCert: sqlite.prepare(
      `INSERT INTO certificates (serial, uuid, subject, hardware_id, name, production, not_before, not_after, pem, issued_at, client_address, request_id)
       VALUES (@serial, @uuid, @subject, @hardwareId, @name, @production, @notBefore, @notAfter, @pem, @issuedAt, @clientAddress, @requestId)`,
    ),
    upsertDevice: sqlite.prepare(
      `INSERT INTO devices (uuid, name, hardware_id, production, serial, first_registered_at, last_registered_at, registrations)
       VALUES (@uuid, @name, @hardwareId, @production, @serial, @issuedAt, @issuedAt, 1)
       ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, hardware_id = excluded.hardware_id, production = excluded.production,
         serial = excluded.serial, last_registered_at = excluded.last_registered_at, registrations = devices.registrations + 1`,
    ),
  };

  const findDenied = (uuid: string): DeniedDevice | undefined => {
    const row = hot.denied.get(uuid);
    return row && { uuid: row.uuid, name: row.name, reason: row.reason, deniedAt: new Date(row.denied_at) };
  };

  // One record; nested inside the batch transaction it runs in its own SAVEPOINT,
  // so a refused record rolls back alone.
  const recordOne = sqlite.transaction((cert: IssuedCertificate, opts: RecordOptions) => {
    if (hot.denied.get(cert.uuid)) throw new KilnError('denied', `device ${cert.uuid} is on the deny-list`);
    if (opts.rejectReregistration && hot.device.get(cert.uuid)) throw new KilnError('conflict', `device ${cert.uuid} is already registered`);
    if (hot.serialTaken.get(cert.serial)) throw new KilnError('conflict', `serial ${cert.serial} is already used (re-registration with UUID serials)`);
    const row = {
      ...cert,
      production: cert.production ? 1 : 0,
      notBefore: cert.notBefore.getTime(),
      notAfter: cert.notAfter.getTime(),
      issuedAt: cert.issuedAt.getTime(),
    };
    hot.insertCert.run(row);
    hot.upsertDevice.run(row);
  });

  // Group commit: records arriving in the same event-loop turn share one
  // transaction (one fsync); each promise settles only after that commit.
  interface Pending {
    cert: IssuedCertificate;
    opts: RecordOptions;
    resolve: () => void;
    reject: (err: unknown) => void;
  }
  let queue: Pending[] = [];
  const flush = (): void => {
    const batch = queue;
    queue = [];
    const refused = new Map<Pending, unknown>();
    try {
      sqlite.transaction(() => {
        for (const p of batch) {
          try {
            recordOne(p.cert, p.opts);
          } catch (err) {
            refused.set(p, err);
          }
        }
      })();
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    for (const p of batch) (refused.has(p) ? p.reject(refused.get(p)) : p.resolve());
  };
  const record = (cert: IssuedCertificate, opts: RecordOptions): Promise<void> =>
    new Promise((resolve, reject) => {
      if (queue.push({ cert, opts, resolve, reject }) === 1) setImmediate(flush);
    });

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

  return {
    recordIssuance: record,
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
    async ping() {
      sqlite.prepare('select 1').get();
    },
    async close() {
      if (queue.length) flush();
      if (sqlite.open) sqlite.close();
    },
  };
}
