// Online backup and verification of a SQLite registry. `VACUUM INTO` writes a consistent
// snapshot (one read transaction) from a connection of its own: the server's writer goes
// on committing meanwhile (WAL), and the copy holds everything committed before it began.
import Database from 'better-sqlite3';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { KilnError } from '../../../pki/errors.js';
import { packageRoot } from '../../paths.js';
import { sqliteError } from './errors.js';

/** The tables a verification counts, in the order it prints them. */
export const COUNTED_TABLES = [
  'certificates',
  'devices',
  'denied_devices',
  'outbox',
  'lots',
  'approvals',
  'preauthorized',
  'admin_tokens',
  'audit_log',
] as const;

export interface RegistryReport {
  file: string;
  integrity: 'ok';
  /** migrations applied in the file, and how many this version of Kiln has */
  migrations: { applied: number; known: number };
  counts: Record<string, number>;
}

/** A registry file opened read-only: it must exist (66 when it does not). */
export function openReadOnly(path: string): Database.Database {
  if (!existsSync(path)) throw new KilnError('no_input', `no registry at ${path}`);
  try {
    return new Database(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw sqliteError(err, path, 'open');
  }
}

const fsyncFile = (path: string): void => {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
};

/** Writes a consistent copy of the registry at `source` to `target` (which must not exist); returns its report. */
export function backupRegistry(source: string, target: string): RegistryReport {
  if (existsSync(target)) throw new KilnError('cant_create', `${target} exists: a backup never overwrites a file`);
  const db = openReadOnly(source);
  const partial = join(dirname(target), `.${target.split('/').pop()}.partial`);
  rmSync(partial, { force: true });
  try {
    db.pragma('busy_timeout = 5000');
    db.prepare('VACUUM INTO ?').run(partial);
  } catch (err) {
    rmSync(partial, { force: true });
    throw sqliteError(err, partial, 'use');
  } finally {
    db.close();
  }
  // the copy is whole on disk before it gets its name
  fsyncFile(partial);
  renameSync(partial, target);
  fsyncFile(dirname(target));
  return verifyRegistry(target);
}

/** Checks a registry file (a backup): integrity, its migrations, and what it holds. */
export function verifyRegistry(file: string): RegistryReport {
  const db = openReadOnly(file);
  try {
    const problems = db.pragma('integrity_check') as { integrity_check: string }[];
    if (problems.length !== 1 || problems[0].integrity_check !== 'ok')
      throw new KilnError('bad_request', `${file} fails the integrity check: ${problems[0]?.integrity_check ?? 'no answer'}`);
    const fk = db.pragma('foreign_key_check') as unknown[];
    if (fk.length) throw new KilnError('bad_request', `${file} has ${fk.length} rows that break a foreign key`);
    const hasTable = (name: string): boolean =>
      db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
    if (!hasTable('__drizzle_migrations') || !hasTable('certificates'))
      throw new KilnError('bad_request', `${file} is not a Kiln registry`);
    const applied = (db.prepare('SELECT count(*) AS n FROM __drizzle_migrations').get() as { n: number }).n;
    const counts: Record<string, number> = {};
    for (const t of COUNTED_TABLES) counts[t] = hasTable(t) ? (db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n : 0;
    return { file, integrity: 'ok', migrations: { applied, known: knownMigrations() }, counts };
  } catch (err) {
    throw err instanceof KilnError ? err : sqliteError(err, file, 'use');
  } finally {
    db.close();
  }
}

const knownMigrations = (): number =>
  (JSON.parse(readFileSync(join(packageRoot(), 'server/db/sqlite/migrations/meta/_journal.json'), 'utf8')) as { entries: unknown[] })
    .entries.length;
