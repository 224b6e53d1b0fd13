// Server configuration, parsed once at start-up into a frozen object.
// Precedence: flags > environment (KILN_*) > config file (JSON) > defaults.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError, unreadable } from '../pki/errors.js';
import type { LogLevel } from './logger.js';
import { parseDbUrl, type DbLocation } from './db/open.js';

export interface ServeConfig {
  readonly pkiDir: string;
  /** Path of the local CA's private key (PEM). */
  readonly caKey: string;
  readonly db: DbLocation;
  readonly listen: { readonly host: string; readonly port: number };
  /** The admin API's own listener (loopback by default: the port after the device port); null: off. */
  readonly adminListen: { readonly host: string; readonly port: number } | null;
  /** Device gateway URL; defaults from the first DNS SAN of tls-crt. */
  readonly gateway?: string;
  /** OSTree server URL; defaults from the second DNS SAN of tls-crt. */
  readonly ostree?: string;
  readonly validityDays: number;
  readonly serialFromUuid: boolean;
  readonly rejectReregistration: boolean;
  /** A registered UUID with a new key: refused unless allowed once by an operator ('deny'), or issued ('allow', the reference). */
  readonly rekey: 'deny' | 'allow';
  /** Who may register: 'open' (any valid CSR, the reference) or 'token' (a production lot's enrollment token). */
  readonly enrollment: 'open' | 'token';
  /** The header that carries the device's token (lmp-device-register's -H). */
  readonly authHeader: string;
  /** HTTPS for /sign and the other routes (TLS 1.2+): certificate chain and key files. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** The CRL: also written to this file; nextUpdate this many hours after thisUpdate; its URL in new device certificates. */
  readonly crl: { readonly file?: string; readonly periodHours: number; readonly url?: string };
  /** EST: client certificates issued by these CAs (PEM bundle) authenticate simpleenroll, for the lot the URL names. */
  readonly estBootstrapCa?: string;
  /** Prometheus metrics at GET /metrics. */
  readonly metrics: boolean;
  /** /sign requests served at once; past it, 503 with Retry-After (0: no bound). */
  readonly maxInFlight: number;
  /** /sign requests per second per client address; past it, 429 with Retry-After (0: off). */
  readonly rateLimit: number;
  /** /readyz fails with less free space than this where the registry is. */
  readonly minFreeMb: number;
  /** /readyz fails when the local CA expires within this many days. */
  readonly caExpiryMarginDays: number;
  /** Lowest level of log line written: error, warn or info (each request is an info line). */
  readonly logLevel: LogLevel;
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
  adminListen: { key: 'adminListen', env: 'KILN_ADMIN_LISTEN', flag: '--admin-listen' },
  gateway: { key: 'gateway', env: 'KILN_GATEWAY_URL', flag: '--gateway' },
  ostree: { key: 'ostree', env: 'KILN_OSTREE_URL', flag: '--ostree' },
  validityDays: { key: 'validityDays', env: 'KILN_VALIDITY_DAYS', flag: '--validity-days' },
  serialFromUuid: { key: 'serialFromUuid', env: 'KILN_SERIAL_FROM_UUID', flag: '--serial-from-uuid' },
  rejectReregistration: { key: 'rejectReregistration', env: 'KILN_REJECT_REREGISTRATION', flag: '--reject-reregistration' },
  rekey: { key: 'rekey', env: 'KILN_REKEY', flag: '--rekey' },
  enrollment: { key: 'enrollment', env: 'KILN_ENROLLMENT', flag: '--enrollment' },
  authHeader: { key: 'authHeader', env: 'KILN_AUTH_HEADER', flag: '--auth-header' },
  logLevel: { key: 'logLevel', env: 'KILN_LOG_LEVEL', flag: '--log-level' },
  tlsCert: { key: 'tlsCert', env: 'KILN_TLS_CERT', flag: '--tls-cert' },
  tlsKey: { key: 'tlsKey', env: 'KILN_TLS_KEY', flag: '--tls-key' },
  crlFile: { key: 'crlFile', env: 'KILN_CRL_FILE', flag: '--crl-file' },
  crlPeriodHours: { key: 'crlPeriodHours', env: 'KILN_CRL_PERIOD_HOURS', flag: '--crl-period-hours' },
  crlUrl: { key: 'crlUrl', env: 'KILN_CRL_URL', flag: '--crl-url' },
  estBootstrapCa: { key: 'estBootstrapCa', env: 'KILN_EST_BOOTSTRAP_CA', flag: '--est-bootstrap-ca' },
  metrics: { key: 'metrics', env: 'KILN_METRICS', flag: '--metrics' },
  maxInFlight: { key: 'maxInFlight', env: 'KILN_MAX_IN_FLIGHT', flag: '--max-in-flight' },
  rateLimit: { key: 'rateLimit', env: 'KILN_RATE_LIMIT', flag: '--rate-limit' },
  minFreeMb: { key: 'minFreeMb', env: 'KILN_MIN_FREE_MB', flag: '--min-free-mb' },
  caExpiryMarginDays: { key: 'caExpiryMarginDays', env: 'KILN_CA_EXPIRY_MARGIN_DAYS', flag: '--ca-expiry-margin-days' },
  upstreamApi: { key: 'upstreamApi', env: 'KILN_UPSTREAM_API', flag: '--upstream-api' },
  upstreamTokenFile: { key: 'upstreamTokenFile', env: 'KILN_UPSTREAM_TOKEN_FILE', flag: '--upstream-token-file' },
  deviceGroup: { key: 'deviceGroup', env: 'KILN_DEVICE_GROUP', flag: '--device-group' },
  upstreamMode: { key: 'upstreamMode', env: 'KILN_UPSTREAM_MODE', flag: '--upstream-mode' },
  upstreamRetryBaseMs: { key: 'upstreamRetryBaseMs', env: 'KILN_UPSTREAM_RETRY_BASE_MS', flag: '--upstream-retry-base-ms' },
} as const satisfies Record<string, Setting>;

export const CONFIG_ENV = 'KILN_CONFIG';

export const DEFAULTS = {
  pkiDir: './data/pki',
  db: 'sqlite:./data/kiln.db',
  listen: '127.0.0.1:8000',
  validityDays: 7300,
  logLevel: 'info',
  rekey: 'deny',
  enrollment: 'open',
  authHeader: 'OSF-TOKEN',
  maxInFlight: 1024,
  minFreeMb: 64,
  caExpiryMarginDays: 30,
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

/** A value and where it came from, so an error names the flag, variable or file key the operator wrote. */
export interface Sourced {
  raw: Raw;
  /** `--listen x`, `KILN_LISTEN=x`, or `"listen": "x" in kiln.json` */
  where: string;
}

function readConfigFile(path: string): Record<string, Raw> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw unreadable('config file', path, err);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return fail(`config file ${path} is not valid JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`config file ${path} must hold a JSON object ({"db": "sqlite:…", …})`);
  const known = new Set<string>(Object.values(SETTINGS).map((s) => s.key));
  for (const [k, val] of Object.entries(v as object)) {
    if (!known.has(k)) fail(`config file ${path}: unknown setting "${k}"`);
    if (!['string', 'number', 'boolean'].includes(typeof val)) fail(`config file ${path}: "${k}" must be a string, number or boolean`);
  }
  return v as Record<string, Raw>;
}

/** A URL's password never reaches a message: scheme://user:***@host. */
const hidePasswords = (s: string): string => s.replace(/(:\/\/[^:/@\s"]*):[^@\s"]*@/g, '$1:***@');

/** Looks settings up in flags, then the environment, then the config file. */
function settingsReader(src: ConfigSources): { pick(s: Setting): Sourced | undefined; file?: string } {
  const file = src.configFile ?? (src.env[CONFIG_ENV] || undefined);
  const fromFile = file ? readConfigFile(file) : {};
  return {
    file,
    pick(s) {
      const flag = src.flags[s.key];
      if (flag !== undefined) return { raw: flag, where: typeof flag === 'boolean' ? s.flag : hidePasswords(`${s.flag} ${flag}`) };
      const env = src.env[s.env];
      if (env !== undefined && env !== '') return { raw: env, where: hidePasswords(`${s.env}=${env}`) };
      const v = fromFile[s.key];
      if (v !== undefined) return { raw: v, where: hidePasswords(`"${s.key}": ${JSON.stringify(v)} in ${file}`) };
      return undefined;
    },
  };
}

export function parseListen(v: string, where = `--listen ${v}`): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 0 || port > 65535) return fail(`${where}: expected HOST:PORT`);
  return { host: m[1] ?? m[2], port };
}

/**
 * An http(s) URL. Trailing slashes are dropped (a base URL that Kiln appends to),
 * unless `keepPath`: the upstream device API is PUT exactly as written, since
 * `/ota/devices/` and `/ota/devices` are different resources there.
 */
export function parseUrlSetting(where: string, v: string, opts: { keepPath?: boolean } = {}): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return fail(`${where}: not a URL`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') fail(`${where}: expected an http(s) URL`);
  if (/["\\\s]/.test(v)) fail(`${where}: URL must not contain quotes, backslashes or spaces`);
  return opts.keepPath ? v : v.replace(/\/+$/, '');
}

function parseBool(where: string, v: Raw): boolean {
  if (typeof v === 'boolean') return v;
  const s = String(v).toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
  return fail(`${where}: expected true or false`);
}

function parseDays(where: string, v: Raw): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 36500) fail(`${where}: expected a whole number of days between 1 and 36500`);
  return n;
}

function parseHours(where: string, v: Raw): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 8760) fail(`${where}: expected whole hours between 1 and 8760`);
  return n;
}

/** A whole number between `min` and `max`. */
const wholeIn =
  (min: number, max: number) =>
  (where: string, v: Raw): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) fail(`${where}: expected a whole number between ${min} and ${max}`);
    return n;
  };

function parseMs(where: string, v: Raw): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 3_600_000) fail(`${where}: expected milliseconds between 1 and 3600000`);
  return n;
}

function parseRekey(where: string, v: Raw): 'deny' | 'allow' {
  if (v !== 'deny' && v !== 'allow') fail(`${where}: expected deny or allow`);
  return v as 'deny' | 'allow';
}

function parseEnrollment(where: string, v: Raw): 'open' | 'token' {
  if (v !== 'open' && v !== 'token') fail(`${where}: expected open or token`);
  return v as 'open' | 'token';
}

function parseHeaderName(where: string, v: Raw): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/.test(v)) fail(`${where}: expected an HTTP header name`);
  return v as string;
}

const LOG_LEVELS = ['error', 'warn', 'info'] as const;
function parseLogLevel(where: string, v: Raw): LogLevel {
  const s = String(v).toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(s)) fail(`${where}: expected ${LOG_LEVELS.join(', ')}`);
  return s as LogLevel;
}

export function parseServeConfig(src: ConfigSources): ServeConfig {
  const { pick } = settingsReader(src);
  const str = (s: Setting): Sourced | undefined => {
    const v = pick(s);
    return v === undefined ? undefined : { raw: String(v.raw), where: v.where };
  };
  const withDefault = <T>(s: Setting, parse: (where: string, v: Raw) => T, dflt: Raw): T => {
    const v = pick(s);
    return v === undefined ? parse(s.flag, dflt) : parse(v.where, v.raw);
  };

  const pkiDir = String(str(SETTINGS.pkiDir)?.raw ?? DEFAULTS.pkiDir);
  const db = str(SETTINGS.db);
  const listen = str(SETTINGS.listen);
  const adminListen = str(SETTINGS.adminListen);
  const gateway = str(SETTINGS.gateway);
  const ostree = str(SETTINGS.ostree);
  const config = {
    pkiDir,
    caKey: String(str(SETTINGS.caKey)?.raw ?? join(pkiDir, 'local-ca.key')),
    db: parseDbUrl(String(db?.raw ?? DEFAULTS.db), db?.where),
    listen: listen ? parseListen(String(listen.raw), listen.where) : parseListen(DEFAULTS.listen),
    gateway: gateway === undefined ? undefined : parseUrlSetting(gateway.where, String(gateway.raw)),
    ostree: ostree === undefined ? undefined : parseUrlSetting(ostree.where, String(ostree.raw)),
    validityDays: withDefault(SETTINGS.validityDays, parseDays, DEFAULTS.validityDays),
    serialFromUuid: withDefault(SETTINGS.serialFromUuid, parseBool, false),
    rejectReregistration: withDefault(SETTINGS.rejectReregistration, parseBool, false),
    rekey: withDefault(SETTINGS.rekey, parseRekey, DEFAULTS.rekey),
    enrollment: withDefault(SETTINGS.enrollment, parseEnrollment, DEFAULTS.enrollment),
    authHeader: withDefault(SETTINGS.authHeader, parseHeaderName, DEFAULTS.authHeader),
    logLevel: withDefault(SETTINGS.logLevel, parseLogLevel, DEFAULTS.logLevel),
    tls: ((c, k) => {
      if (!c && !k) return undefined;
      if (!c || !k) return fail(`${(c ?? k)!.where} needs ${c ? '--tls-key' : '--tls-cert'} too`);
      return Object.freeze({ cert: String(c.raw), key: String(k.raw) });
    })(str(SETTINGS.tlsCert), str(SETTINGS.tlsKey)),
    crl: Object.freeze({
      file: str(SETTINGS.crlFile)?.raw as string | undefined,
      periodHours: withDefault(SETTINGS.crlPeriodHours, parseHours, 24),
      url: ((u) => (u ? parseUrlSetting(u.where, String(u.raw), { keepPath: true }) : undefined))(str(SETTINGS.crlUrl)),
    }),
    estBootstrapCa: str(SETTINGS.estBootstrapCa)?.raw as string | undefined,
    metrics: withDefault(SETTINGS.metrics, parseBool, true),
    maxInFlight: withDefault(SETTINGS.maxInFlight, wholeIn(0, 1_000_000), DEFAULTS.maxInFlight),
    rateLimit: withDefault(SETTINGS.rateLimit, wholeIn(0, 1_000_000), 0),
    minFreeMb: withDefault(SETTINGS.minFreeMb, wholeIn(0, 10_000_000), DEFAULTS.minFreeMb),
    caExpiryMarginDays: withDefault(SETTINGS.caExpiryMarginDays, wholeIn(0, 36500), DEFAULTS.caExpiryMarginDays),
  };
  // a bootstrap certificate is a TLS client certificate: there is none without HTTPS
  if (config.estBootstrapCa !== undefined && !config.tls)
    fail(
      `${str(SETTINGS.estBootstrapCa)!.where} needs HTTPS (--tls-cert and --tls-key): bootstrap certificates are TLS client certificates`,
    );
  const api = str(SETTINGS.upstreamApi);
  const tokenFile = str(SETTINGS.upstreamTokenFile);
  const group = str(SETTINGS.deviceGroup);
  const mode = str(SETTINGS.upstreamMode);
  if (mode && mode.raw !== 'sync' && mode.raw !== 'outbox') fail(`${mode.where}: expected sync or outbox`);
  if (api !== undefined && tokenFile === undefined)
    fail(
      `${api.where} needs an upstream token file too (--upstream-token-file or ${SETTINGS.upstreamTokenFile.env}: the token with scope devices:create)`,
    );
  if (api === undefined && (tokenFile ?? group) !== undefined)
    fail(`${(tokenFile ?? group)!.where} needs an upstream API (--upstream-api or ${SETTINGS.upstreamApi.env})`);
  const upstream =
    api === undefined
      ? undefined
      : Object.freeze({
          api: parseUrlSetting(api.where, String(api.raw), { keepPath: true }),
          tokenFile: String(tokenFile!.raw),
          group: group === undefined ? undefined : String(group.raw),
          mode: (mode?.raw ?? 'outbox') as 'sync' | 'outbox',
          retryBaseMs: withDefault(SETTINGS.upstreamRetryBaseMs, parseMs, 1000),
        });
  const admin =
    adminListen === undefined
      ? { host: '127.0.0.1', port: config.listen.port === 0 ? 0 : config.listen.port + 1 }
      : adminListen.raw === 'off'
        ? null
        : parseListen(String(adminListen.raw), adminListen.where);
  if (admin && admin.port > 65535) fail(`the admin API's default port ${admin.port} is not a port: set --admin-listen`);
  return Object.freeze({
    ...config,
    listen: Object.freeze(config.listen),
    adminListen: admin && Object.freeze(admin),
    db: Object.freeze(config.db),
    upstream,
  });
}
