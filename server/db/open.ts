// Opens the registry named by a database URL: `sqlite:PATH` (or `sqlite::memory:`).
import { KilnError } from '../../pki/errors.js';
import { openSqliteStore } from './sqlite/store.js';
import type { Store } from './store.js';
import type { WriterEvents } from './sqlite/writer.js';

export type DbLocation = { kind: 'sqlite'; path: string };

/** `where` names the source in errors: `--db x`, `KILN_DB=x`, or a config file key. */
export function parseDbUrl(url: string, where = `--db ${url}`): DbLocation {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path) throw new KilnError('config', `${where}: no file path after sqlite:`);
    return { kind: 'sqlite', path };
  }
  throw new KilnError('config', `${where}: expected sqlite:PATH`);
}

/**
 * The server commits on a writer thread and creates the registry; CLIs and tests
 * commit inline, and the admin commands open only an existing registry (create: false).
 */
export function openStore(
  loc: DbLocation,
  opts: { writer?: 'inline' | 'worker'; create?: boolean; writerEvents?: WriterEvents; minFreeBytes?: number } = {},
): Store {
  return openSqliteStore(loc.path, { ...opts, writer: loc.path === ':memory:' ? 'inline' : opts.writer });
}
