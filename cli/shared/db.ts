// The site configuration and the registry for one admin command. The admin commands
// read the same settings as `kilnctl serve` (flags > KILN_* > --config/KILN_CONFIG >
// defaults), so a site is configured once; they open an existing registry only.
import { parseServeConfig, type ServeConfig } from '../../server/config.js';
import { openStore } from '../../server/db/open.js';
import type { Store } from '../../server/db/store.js';

/** The options every admin command may take; flags win over the environment and the file. */
export interface SiteOpts {
  config?: string;
  db?: string;
  pkiDir?: string;
  caKey?: string;
  upstreamApi?: string;
  upstreamTokenFile?: string;
}

export function siteConfig(o: SiteOpts, env: NodeJS.ProcessEnv): ServeConfig {
  const { config, ...flags } = o;
  const known = Object.fromEntries(
    (['db', 'pkiDir', 'caKey', 'upstreamApi', 'upstreamTokenFile'] as const).map((k) => [k, flags[k]]),
  );
  return parseServeConfig({ flags: known, env, configFile: config });
}

export async function withStore<T>(o: SiteOpts, env: NodeJS.ProcessEnv, fn: (store: Store, config: ServeConfig) => Promise<T>): Promise<T> {
  const config = siteConfig(o, env);
  const store = openStore(config.db, { create: false });
  try {
    return await fn(store, config);
  } finally {
    await store.close();
  }
}
