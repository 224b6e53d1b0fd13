// Opens the registry named by a database URL: `sqlite:PATH` (or `sqlite::memory:`).
import { KilnError } from '../../pki/errors.js';
import { openSqliteStore } from './sqlite/store.js';
import type { Store } from './store.js';

export type DbLocation = { kind: 'sqlite'; path: string };

export function parseDbUrl(url: string): DbLocation {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path) throw new KilnError('config', `--db ${url}: no file path after sqlite:`);
    return { kind: 'sqlite', path };
  }
  throw new KilnError('config', `--db ${url}: expected sqlite:PATH`);
}

/** The server commits on a writer thread; CLIs and tests inline. */
export function openStore(loc: DbLocation, opts: { writer?: 'inline' | 'worker' } = {}): Store {
  return openSqliteStore(loc.path, { writer: loc.path === ':memory:' ? 'inline' : opts.writer });
}
