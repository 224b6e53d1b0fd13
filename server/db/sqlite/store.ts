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

  const findDenied = (uuid: string): DeniedDevice | undefined => db.select().from(deniedDevices).where(eq(deniedDevices.uuid, uuid)).get();

  const record = sqlite.transaction((cert: IssuedCertificate, opts: RecordOptions) => {
    if (findDenied(cert.uuid)) throw new KilnError('denied', `device ${cert.uuid} is on the deny-list`);
    const existing = db.select().from(devices).where(eq(devices.uuid, cert.uuid)).get();
    if (existing && opts.rejectReregistration) throw new KilnError('conflict', `device ${cert.uuid} is already registered`);
    if (db.select({ s: certificates.serial }).from(certificates).where(eq(certificates.serial, cert.serial)).get()) {
      throw new KilnError('conflict', `serial ${cert.serial} is already used (re-registration with UUID serials)`);
    }
    db.insert(certificates).values(cert).run();
    const row = {
      name: cert.name,
      hardwareId: cert.hardwareId,
      production: cert.production,
      serial: cert.serial,
      lastRegisteredAt: cert.issuedAt,
    };
    if (existing) {
      db.update(devices)
        .set({ ...row, registrations: existing.registrations + 1 })
        .where(eq(devices.uuid, cert.uuid))
        .run();
    } else {
      db.insert(devices)
        .values({ ...row, uuid: cert.uuid, firstRegisteredAt: cert.issuedAt, registrations: 1 })
        .run();
    }
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
    async recordIssuance(cert, opts) {
      record(cert, opts);
    },
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
      if (sqlite.open) sqlite.close();
    },
  };
}
