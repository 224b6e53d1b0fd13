// Opens the registry named by a database URL: `sqlite:PATH` (or `sqlite::memory:`), or
// `postgres://…` / `postgresql://…` (`postgres:` alone: the PG* environment variables).
import { KilnError } from '../../pki/errors.js';
import { openPgStore } from './pg/store.js';
import { redactUrl } from './pg/errors.js';
import { openSqliteStore } from './sqlite/store.js';
import type { Store } from './store.js';
import type { WriterEvents } from './sqlite/writer.js';

export type DbLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/** `where` names the source in errors: `--db x`, `KILN_DB=x`, or a config file key. */
export function parseDbUrl(url: string, where = `--db ${redactUrl(url)}`): DbLocation {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path) throw new KilnError('config', `${where}: no file path after sqlite:`);
    return { kind: 'sqlite', path };
  }
  if (/^postgres(ql)?:$/.test(url)) return { kind: 'postgres', url: '' };
  if (/^postgres(ql)?:\/\//.test(url)) {
    try {
      new URL(url);
    } catch {
      throw new KilnError('config', `${where}: not a valid postgres:// URL`);
    }
    return { kind: 'postgres', url };
  }
  throw new KilnError('config', `${where}: expected sqlite:PATH or postgres://USER@HOST/DATABASE`);
}

/** How a location is named in logs: the password hidden. */
export const describeDb = (loc: DbLocation): string =>
  loc.kind === 'sqlite' ? `sqlite:${loc.path}` : loc.url ? redactUrl(loc.url) : 'postgres: (PG* environment)';

export interface OpenOptions {
  writer?: 'inline' | 'worker';
  create?: boolean;
  writerEvents?: WriterEvents;
  minFreeBytes?: number;
}

/**
 * The server commits on a writer thread and creates the registry; CLIs and tests
 * commit inline, and the admin commands open only an existing registry (create: false).
 * PostgreSQL: the database must exist; its tables are created (migrated) on open.
 */
export async function openStore(loc: DbLocation, opts: OpenOptions = {}): Promise<Store> {
  if (loc.kind === 'postgres') return openPgStore(loc.url, { events: { batch: opts.writerEvents?.batch } });
  return openSqliteStore(loc.path, { ...opts, writer: loc.path === ':memory:' ? 'inline' : opts.writer });
}
