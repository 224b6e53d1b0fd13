// The /sign request body, shaped exactly as lmp-device-register writes it:
// every value a string, overrides pre-quoted as TOML, `/` escaped as `\/`.
import { HSM_OVERRIDES } from './hsm-config.js';
import type { Options } from './options.js';

export type Overrides = Record<string, Record<string, string>>;

const toml = (s: string): string => JSON.stringify(s);

export function buildOverrides(o: Options): Overrides {
  const pacman: Record<string, string> = {
    type: toml('ostree+compose_apps'),
    compose_apps_root: toml(`${o.sotaDir}/compose-apps`),
  };
  if (o.apps !== undefined) pacman.compose_apps = toml(o.apps);
  pacman.reset_apps_root = toml(`${o.sotaDir}/reset-apps`);
  pacman.reset_apps = toml(o.restorableApps ?? ' ');
  if (o.tags) pacman.tags = toml(o.tags);
  return o.hsmModule ? { pacman, ...HSM_OVERRIDES } : { pacman };
}

export function buildSignBody(o: Options, csrPem: string): string {
  const body: Record<string, string | Overrides> = {
    'hardware-id': o.hwid,
    uuid: o.uuid,
    name: o.name,
    csr: csrPem,
    'sota-config-dir': o.sotaDir,
    'use-ostree-server': o.useOstreeServer ? 'true' : 'false',
  };
  if (o.group !== undefined) body.group = o.group;
  body.overrides = buildOverrides(o);
  return JSON.stringify(body).replace(/\//g, '\\/');
}
