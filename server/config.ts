// Server configuration, parsed once at start-up into a frozen object.
// Precedence: flags > environment (KILN_*) > config file (JSON) > defaults.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError, unreadable } from '../pki/errors.js';
import { parseDbUrl, type DbLocation } from './db/open.js';

export interface ServeConfig {
  readonly pkiDir: string;
  /** Path of the local CA's private key (PEM). */
  readonly caKey: string;
  readonly db: DbLocation;
  readonly listen: { readonly host: string; readonly port: number };
  /** Device gateway URL; defaults from the first DNS SAN of tls-crt. */
  readonly gateway?: string;
  /** OSTree server URL; defaults from the second DNS SAN of tls-crt. */
  readonly ostree?: string;
  readonly validityDays: number;
  readonly serialFromUuid: boolean;
  readonly rejectReregistration: boolean;
  /** Partially detached mode, when an upstream API is configured. */
  readonly upstream?: {
    readonly api: string;
    readonly tokenFile: string;
    readonly group?: string;
    readonly mode: 'sync' | 'outbox';
    /** First back-off of the outbox; doubles per attempt (with jitter) up to 5 minutes. */
    readonly retryBaseMs: number;
  };
}

type Raw = string | boolean | number | undefined;

/** One setting: its names in each source, and how to read a raw value. */
interface Setting {
  key: string;
  env: string;
  flag: string;
}

export const SETTINGS = {
  pkiDir: { key: 'pkiDir', env: 'KILN_PKI_DIR', flag: '--pki-dir' },
  caKey: { key: 'caKey', env: 'KILN_CA_KEY', flag: '--ca-key' },
  db: { key: 'db', env: 'KILN_DB', flag: '--db' },
  listen: { key: 'listen', env: 'KILN_LISTEN', flag: '--listen' },
  gateway: { key: 'gateway', env: 'KILN_GATEWAY_URL', flag: '--gateway' },
  ostree: { key: 'ostree', env: 'KILN_OSTREE_URL', flag: '--ostree' },
  validityDays: { key: 'validityDays', env: 'KILN_VALIDITY_DAYS', flag: '--validity-days' },
  serialFromUuid: { key: 'serialFromUuid', env: 'KILN_SERIAL_FROM_UUID', flag: '--serial-from-uuid' },
  rejectReregistration: { key: 'rejectReregistration', env: 'KILN_REJECT_REREGISTRATION', flag: '--reject-reregistration' },
  upstreamApi: { key: 'upstreamApi', env: 'KILN_UPSTREAM_API', flag: '--upstream-api' },
  upstreamTokenFile: { key: 'upstreamTokenFile', env: 'KILN_UPSTREAM_TOKEN_FILE', flag: '--upstream-token-file' },
  deviceGroup: { key: 'deviceGroup', env: 'KILN_DEVICE_GROUP', flag: '--device-group' },
  upstreamMode: { key: 'upstreamMode', env: 'KILN_UPSTREAM_MODE', flag: '--upstream-mode' },
  upstreamRetryBaseMs: { key: 'upstreamRetryBaseMs', env: 'KILN_UPSTREAM_RETRY_BASE_MS', flag: '--upstream-retry-base-ms' },
} as const satisfies Record<string, Setting>;

export const DEFAULTS = {
  pkiDir: './data/pki',
  db: 'sqlite:./data/kiln.db',
  listen: '127.0.0.1:8000',
  validityDays: 7300,
} as const;

export interface ConfigSources {
  flags: Record<string, Raw>;
  env: Record<string, string | undefined>;
  /** Path of a JSON config file (`--config` / KILN_CONFIG). */
  configFile?: string;
}

const fail = (msg: string): never => {
  throw new KilnError('config', msg);
};

function readConfigFile(path: string): Record<string, Raw> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw unreadable('config file', path, err);
  }
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    const known = new Set<string>(Object.values(SETTINGS).map((s) => s.key));
    for (const k of Object.keys(v)) if (!known.has(k)) fail(`config file ${path}: unknown setting "${k}"`);
    return v as Record<string, Raw>;
  } catch (err) {
    if (err instanceof KilnError) throw err;
    return fail(`config file ${path} is not a JSON object`);
  }
}

export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 0 || port > 65535) return fail(`--listen ${v}: expected HOST:PORT`);
  return { host: m[1] ?? m[2], port };
}

export function parseUrlSetting(flag: string, v: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return fail(`${flag} ${v}: not a URL`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') fail(`${flag} ${v}: expected an http(s) URL`);
  if (/["\\\s]/.test(v)) fail(`${flag}: URL must not contain quotes, backslashes or spaces`);
  return v.replace(/\/+$/, '');
}

function parseBool(flag: string, v: Raw): boolean {
  if (typeof v === 'boolean') return v;
  const s = String(v).toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
  return fail(`${flag}: expected true or false, got "${v}"`);
}

function parseDays(flag: string, v: Raw): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 36500) fail(`${flag} ${v}: expected a whole number of days between 1 and 36500`);
  return n;
}

function parseMs(flag: string, v: Raw): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 3_600_000) fail(`${flag} ${v}: expected milliseconds between 1 and 3600000`);
  return n;
}

export function parseServeConfig(src: ConfigSources): ServeConfig {
  const file = src.configFile ?? src.env.KILN_CONFIG;
  const fromFile = file ? readConfigFile(file) : {};
  const pick = (s: Setting): Raw => {
    const flag = src.flags[s.key];
    if (flag !== undefined) return flag;
    const env = src.env[s.env];
    if (env !== undefined && env !== '') return env;
    return fromFile[s.key];
  };
  const str = (s: Setting, dflt?: string): string | undefined => {
    const v = pick(s);
    return v === undefined ? dflt : String(v);
  };

  const pkiDir = str(SETTINGS.pkiDir, DEFAULTS.pkiDir)!;
  const gateway = str(SETTINGS.gateway);
  const ostree = str(SETTINGS.ostree);
  const config: ServeConfig = {
    pkiDir,
    caKey: str(SETTINGS.caKey, join(pkiDir, 'local-ca.key'))!,
    db: parseDbUrl(str(SETTINGS.db, DEFAULTS.db)!),
    listen: parseListen(str(SETTINGS.listen, DEFAULTS.listen)!),
    gateway: gateway === undefined ? undefined : parseUrlSetting(SETTINGS.gateway.flag, gateway),
    ostree: ostree === undefined ? undefined : parseUrlSetting(SETTINGS.ostree.flag, ostree),
    validityDays: parseDays(SETTINGS.validityDays.flag, pick(SETTINGS.validityDays) ?? DEFAULTS.validityDays),
    serialFromUuid: parseBool(SETTINGS.serialFromUuid.flag, pick(SETTINGS.serialFromUuid) ?? false),
    rejectReregistration: parseBool(SETTINGS.rejectReregistration.flag, pick(SETTINGS.rejectReregistration) ?? false),
  };
  const api = str(SETTINGS.upstreamApi);
  const tokenFile = str(SETTINGS.upstreamTokenFile);
  const mode = str(SETTINGS.upstreamMode) ?? 'outbox';
  if (mode !== 'sync' && mode !== 'outbox') fail(`--upstream-mode ${mode}: expected sync or outbox`);
  if (api !== undefined && tokenFile === undefined)
    fail('--upstream-api needs --upstream-token-file (the token with scope devices:create)');
  if (api === undefined && (tokenFile ?? str(SETTINGS.deviceGroup)) !== undefined)
    fail('--upstream-token-file and --device-group need --upstream-api');
  const upstream =
    api === undefined
      ? undefined
      : Object.freeze({
          api: parseUrlSetting(SETTINGS.upstreamApi.flag, api),
          tokenFile: tokenFile!,
          group: str(SETTINGS.deviceGroup),
          mode: mode as 'sync' | 'outbox',
          retryBaseMs: parseMs(SETTINGS.upstreamRetryBaseMs.flag, pick(SETTINGS.upstreamRetryBaseMs) ?? 1000),
        });
  return Object.freeze({ ...config, listen: Object.freeze(config.listen), db: Object.freeze(config.db), upstream });
}
