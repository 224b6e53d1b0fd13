// device-register's command line, environment and /etc/os-release defaults:
// the same options as lmp-device-register (contract §7). Pure: no I/O.
import { randomUUID } from 'node:crypto';
import { isCanonicalUuid } from '../../pki/policy.js';
import { usage } from '../shared/run.js';

export interface Options {
  /** DEVICE_API was not set: the Foundries.io cloud default is used. */
  deviceApiDefaulted: boolean;
  /** A CA file to verify an https DEVICE_API against (instead of the system's). */
  caFile?: string;
  production: boolean;
  startDaemon: boolean;
  sotaDir: string;
  group?: string;
  factory: string;
  hwid: string;
  tags?: string;
  apiToken: string;
  /** Read the token from here instead (Kiln extension). */
  apiTokenFile?: string;
  apiTokenHeader: string;
  uuid: string;
  name: string;
  apps?: string;
  restorableApps?: string;
  useOstreeServer: boolean;
  force: boolean;
  hsmModule?: string;
  hsmPin?: string;
  hsmSoPin?: string;
  /** KEY=value file with HSM_PIN (and HSM_SOPIN): keeps the PINs out of ps */
  hsmPinsFile?: string;
  /** post-registration hooks */
  hooksDir: string;
  deviceApi: string;
  /** Command that starts the update client (tests point it elsewhere). */
  startDaemonCommand: string;
  timeoutMs: number;
}

type Kind = 'bool' | 'string';
interface Spec {
  key: string;
  long: string;
  short?: string;
  kind: Kind;
  help: string;
}

const SPECS: Spec[] = [
  {
    key: 'production',
    long: 'production',
    short: 'p',
    kind: 'bool',
    help: 'request a production certificate (businessCategory=production)',
  },
  { key: 'startDaemon', long: 'start-daemon', kind: 'bool', help: 'start aktualizr-lite after registering (default 1)' },
  { key: 'sotaDir', long: 'sota-dir', short: 'd', kind: 'string', help: 'directory for the device files (default /var/sota)' },
  { key: 'group', long: 'device-group', short: 'g', kind: 'string', help: 'device group to join' },
  { key: 'factory', long: 'factory', short: 'f', kind: 'string', help: 'factory name (default $DEVICE_FACTORY, then LMP_FACTORY)' },
  { key: 'hwid', long: 'hwid', short: 'i', kind: 'string', help: 'hardware id (default LMP_MACHINE from os-release)' },
  { key: 'tags', long: 'tags', short: 't', kind: 'string', help: 'update tags (default LMP_FACTORY_TAG)' },
  { key: 'apiToken', long: 'api-token', short: 'T', kind: 'string', help: 'API token sent with the request' },
  { key: 'apiTokenFile', long: 'api-token-file', kind: 'string', help: 'read the API token from this file (keeps it out of ps)' },
  { key: 'apiTokenHeader', long: 'api-token-header', short: 'H', kind: 'string', help: 'header carrying the token (default OSF-TOKEN)' },
  { key: 'uuid', long: 'uuid', short: 'u', kind: 'string', help: 'device UUID (default: a new random one)' },
  { key: 'name', long: 'name', short: 'n', kind: 'string', help: 'device name (default: the UUID)' },
  { key: 'apps', long: 'apps', short: 'a', kind: 'string', help: 'comma-separated compose apps to run' },
  { key: 'restorableApps', long: 'restorable-apps', short: 'A', kind: 'string', help: 'comma-separated restorable apps' },
  { key: 'useOstreeServer', long: 'use-ostree-server', kind: 'bool', help: 'use the OSTree server' },
  { key: 'validateUuid', long: 'validate-uuid', short: 'v', kind: 'bool', help: 'refuse a --uuid that is not a canonical UUID' },
  { key: 'force', long: 'force', kind: 'bool', help: 'register even if the device looks registered' },
  { key: 'hsmModule', long: 'hsm-module', short: 'm', kind: 'string', help: 'PKCS#11 module for an HSM-held key' },
  { key: 'hsmPin', long: 'hsm-pin', short: 'P', kind: 'string', help: 'HSM user PIN' },
  { key: 'hsmSoPin', long: 'hsm-so-pin', short: 'S', kind: 'string', help: 'HSM security officer PIN' },
  {
    key: 'hsmPinsFile',
    long: 'hsm-pins-file',
    kind: 'string',
    help: 'read HSM_PIN and HSM_SOPIN (KEY=value lines) from this file (keeps them out of ps)',
  },
  {
    key: 'hooksDir',
    long: 'hooks-dir',
    kind: 'string',
    help: 'run the executables here after registering (default /etc/kiln/post-register.d)',
  },
  { key: 'osRelease', long: 'os-release', kind: 'string', help: 'os-release file to read defaults from (default /etc/os-release)' },
  {
    key: 'startDaemonCommand',
    long: 'start-daemon-command',
    kind: 'string',
    help: 'command that starts the update client (default: systemctl start aktualizr-lite)',
  },
  { key: 'timeout', long: 'timeout', kind: 'string', help: 'seconds to wait for the server (default 30)' },
  { key: 'caFile', long: 'ca-file', kind: 'string', help: 'trust this CA file (PEM) for an https DEVICE_API, e.g. the factory root' },
];

export type RawOptions = Record<string, string | boolean | undefined> & { help?: boolean; version?: boolean };

const BOOL_WORDS: Record<string, boolean> = { '1': true, true: true, yes: true, on: true, '0': false, false: false, no: false, off: false };

/** Parses argv. Booleans accept `--force`, `--force 1`, `--force=0`, `-p`. */
export function parseArgs(argv: string[]): RawOptions {
  const out: RawOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') return { help: true };
    if (arg === '--version') return { version: true };
    let name: string;
    let inline: string | undefined;
    let spec: Spec | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
      inline = eq > 0 ? arg.slice(eq + 1) : undefined;
      spec = SPECS.find((s) => s.long === name);
    } else if (/^-[A-Za-z]$/.test(arg)) {
      name = arg.slice(1);
      spec = SPECS.find((s) => s.short === name);
    } else {
      throw usage(`unexpected argument "${arg}"`);
    }
    if (!spec) throw usage(`unknown option ${arg}`);
    if (spec.kind === 'bool') {
      const next = inline ?? argv[i + 1];
      if (next !== undefined && next.toLowerCase() in BOOL_WORDS) {
        out[spec.key] = BOOL_WORDS[next.toLowerCase()];
        if (inline === undefined) i++;
      } else if (inline !== undefined) {
        throw usage(`${arg}: expected 0 or 1`);
      } else {
        out[spec.key] = true;
      }
    } else {
      const value = inline ?? argv[++i];
      if (value === undefined) throw usage(`${arg} needs a value`);
      out[spec.key] = value;
    }
  }
  return out;
}

export function helpText(): string {
  const lines = SPECS.map((s) => {
    const flags = `${s.short ? `-${s.short}, ` : '    '}--${s.long}${s.kind === 'string' ? ' VALUE' : ' [0|1]'}`;
    return `  ${flags.padEnd(34)} ${s.help}`;
  });
  return `Usage: device-register [options]\n       device-register renew [options]   (renew the certificate over EST: device-register renew --help)\n\nRegisters this device with a factory registration server (DEVICE_API).\n\n${lines.join('\n')}\n\nEnvironment: DEVICE_API (default ${DEFAULT_DEVICE_API}), PRODUCTION, DEVICE_FACTORY.\n\nExit codes: 0 registered, 64 usage, 65 refused or a bad answer, 69 registered but the update client did not start,\n74 the device files could not be written, 75 temporary (network, 5xx: retry), 77 refused with 401/403, 78 configuration.\n`;
}

/** KEY=value pairs of an os-release file (quotes removed). */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2].trim();
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1);
    out[m[1]] = v.replace(/\\(["$`\\])/g, '$1');
  }
  return out;
}

export const DEFAULT_DEVICE_API = 'https://api.foundries.io/ota/devices/';

/** Options > environment > os-release > defaults. */
export function resolveOptions(raw: RawOptions, env: NodeJS.ProcessEnv, osRelease: Record<string, string>): Options {
  const str = (k: string): string | undefined => (typeof raw[k] === 'string' ? (raw[k] as string) : undefined);
  const bool = (k: string, dflt: boolean): boolean => (typeof raw[k] === 'boolean' ? (raw[k] as boolean) : dflt);

  const factory = str('factory') ?? env.DEVICE_FACTORY ?? osRelease.LMP_FACTORY;
  if (!factory) throw usage('no factory: pass --factory, set DEVICE_FACTORY, or have LMP_FACTORY in os-release');
  const hwid = str('hwid') ?? osRelease.LMP_MACHINE;
  if (!hwid) throw usage('no hardware id: pass --hwid (or have LMP_MACHINE in os-release)');
  let uuid = str('uuid');
  if (uuid !== undefined && bool('validateUuid', false) && !isCanonicalUuid(uuid)) throw usage(`--uuid ${uuid} is not a canonical UUID`);
  uuid = uuid ?? randomUUID();
  const timeout = Number(str('timeout') ?? 30);
  if (!(timeout > 0 && timeout <= 600)) throw usage('--timeout must be between 0 and 600 seconds');
  const deviceApi = env.DEVICE_API || DEFAULT_DEVICE_API;
  try {
    const u = new URL(deviceApi);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
  } catch {
    throw usage(`DEVICE_API ${deviceApi} is not an http(s) URL`);
  }
  const sotaDir = (str('sotaDir') ?? '/var/sota').replace(/(.)\/+$/, '$1');
  if (!sotaDir.startsWith('/')) throw usage('--sota-dir must be an absolute path');
  const pinGiven = str('hsmPin') !== undefined || str('hsmPinsFile') !== undefined;
  if (str('hsmModule') !== undefined && !pinGiven) throw usage('--hsm-module needs the user PIN (--hsm-pins-file, or -P/--hsm-pin)');
  if (str('hsmModule') === undefined && (str('hsmPin') ?? str('hsmSoPin') ?? str('hsmPinsFile')) !== undefined)
    throw usage('-P/-S/--hsm-pins-file need --hsm-module (-m)');
  return {
    deviceApiDefaulted: !env.DEVICE_API,
    caFile: str('caFile'),
    production: bool('production', env.PRODUCTION !== undefined),
    startDaemon: bool('startDaemon', true),
    sotaDir,
    group: str('group'),
    factory,
    hwid,
    tags: str('tags') ?? (osRelease.LMP_FACTORY_TAG || undefined),
    apiToken: str('apiToken') ?? '',
    apiTokenFile: str('apiTokenFile'),
    apiTokenHeader: str('apiTokenHeader') ?? 'OSF-TOKEN',
    uuid,
    name: str('name') ?? uuid,
    apps: str('apps'),
    restorableApps: str('restorableApps'),
    useOstreeServer: bool('useOstreeServer', false),
    force: bool('force', false),
    hsmModule: str('hsmModule'),
    hsmPin: str('hsmPin'),
    hsmSoPin: str('hsmSoPin'),
    hsmPinsFile: str('hsmPinsFile'),
    hooksDir: str('hooksDir') ?? '/etc/kiln/post-register.d',
    deviceApi,
    startDaemonCommand: str('startDaemonCommand') ?? 'systemctl start aktualizr-lite',
    timeoutMs: timeout * 1000,
  };
}

export const osReleasePath = (raw: RawOptions): string => (typeof raw.osRelease === 'string' ? raw.osRelease : '/etc/os-release');
