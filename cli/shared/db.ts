// Opening the registry for one CLI command: --db, else $KILN_DB, else the default.
import { DEFAULTS, SETTINGS } from '../../server/config.js';
import { openStore, parseDbUrl } from '../../server/db/open.js';
import type { Store } from '../../server/db/store.js';

export async function withStore<T>(db: string | undefined, env: NodeJS.ProcessEnv, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = openStore(parseDbUrl(db ?? env[SETTINGS.db.env] ?? DEFAULTS.db));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
