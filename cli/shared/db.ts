// The site configuration and the registry for one admin command. The admin commands
// read the same settings as `kilnctl serve` (flags > KILN_* > --config/KILN_CONFIG >
// defaults), so a site is configured once; they open an existing registry only.
import { parseServeConfig, type ServeConfig } from '../../server/config.js';
import { openStore } from '../../server/db/open.js';
import type { Store } from '../../server/db/store.js';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { KilnError, unreadable } from '../../pki/errors.js';
import { createAdminService, type Actor, type AdminApi } from '../../server/admin/service.js';
import { createRemoteAdmin } from './remote-admin.js';

/** The options every admin command may take; flags win over the environment and the file. */
export interface SiteOpts {
  config?: string;
  db?: string;
  /** work against a running server's admin API instead of the registry */
  server?: string;
  /** the admin token's file (with --server) */
  tokenFile?: string;
  pkiDir?: string;
  caKey?: string;
  upstreamApi?: string;
  upstreamTokenFile?: string;
}

export function siteConfig(o: SiteOpts, env: NodeJS.ProcessEnv): ServeConfig {
  const { config, ...flags } = o;
  const known = Object.fromEntries((['db', 'pkiDir', 'caKey', 'upstreamApi', 'upstreamTokenFile'] as const).map((k) => [k, flags[k]]));
  return parseServeConfig({ flags: known, env, configFile: config });
}

export async function withStore<T>(o: SiteOpts, env: NodeJS.ProcessEnv, fn: (store: Store, config: ServeConfig) => Promise<T>): Promise<T> {
  const config = siteConfig(o, env);
  const store = await openStore(config.db, { create: false });
  try {
    return await fn(store, config);
  } finally {
    await store.close();
  }
}

/**
 * The admin operations for one command: on the registry (as `local:<user>` in the audit
 * log), or with `--server URL --token-file F` over a running server's admin API.
 */
export async function withAdmin<T>(o: SiteOpts, env: NodeJS.ProcessEnv, fn: (api: AdminApi) => Promise<T>): Promise<T> {
  const server = o.server ?? env.KILN_ADMIN_URL;
  if (server) {
    const tokenFile = o.tokenFile ?? env.KILN_ADMIN_TOKEN_FILE;
    if (!tokenFile) throw new KilnError('usage', '--server needs --token-file (or KILN_ADMIN_TOKEN_FILE): the file holding an admin token');
    let token: string;
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      throw unreadable('the admin token file', tokenFile, err);
    }
    if (!token) throw new KilnError('config', `the admin token file ${tokenFile} is empty`);
    return fn(createRemoteAdmin(server, token));
  }
  return withStore(o, env, (store) => fn(createAdminService(store, localActor())));
}

/** kilnctl working on the registry itself: `local:<user>` in the audit log. */
export const localActor = (): Actor => ({ name: `local:${localUser()}`, address: 'local', requestId: randomUUID() });

function localUser(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}
