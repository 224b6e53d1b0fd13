// Parsing and validating the body of POST /sign (contract §1). The CSR itself
// is checked by pki/; this file checks the JSON shape and the strings that end
// up inside sota.toml.
import { KilnError } from '../pki/errors.js';
import type { Overrides } from './sota-toml.js';

export interface SignRequest {
  csr: string;
  hardwareId: string;
  uuid?: string;
  name?: string;
  sotaConfigDir: string;
  overrides: Overrides;
}

const bad = (msg: string): KilnError => new KilnError('bad_request', msg);

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
/** Keys and section names that render safely as bare TOML keys. */
const BARE_KEY = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Limits every real LmP device meets (README, "Request limits"): Yocto MACHINE names
 * for the hardware id, a display name, an absolute path, and the overrides a
 * compose-apps or HSM build sends (a handful of pacman/tls/storage/import keys).
 */
export const REQUEST_LIMITS = {
  /** Yocto MACHINE names: letters, digits, '.', '_', '+', '-' */
  hardwareId: /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/,
  nameMax: 128,
  sotaDirMax: 255,
  overrideSections: 16,
  overrideKeysPerSection: 32,
  overrideValueMax: 1024,
} as const;

/** Names that are JavaScript object internals: never section or key names. */
const OBJECT_INTERNALS = new Set(['__proto__', ...Object.getOwnPropertyNames(Object.prototype)]);

function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw bad(`field '${field}' must be a string`);
  return v;
}

/** A value placed inside a quoted TOML string: no control characters, quotes or backslashes. */
function tomlSafe(field: string, v: string): string {
  if (CONTROL.test(v) || /["\\]/.test(v)) throw bad(`field '${field}' contains a control character, quote or backslash`);
  return v;
}

export function parseSignRequest(text: string): SignRequest {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw bad('request body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('request body must be a JSON object');
  const b = body as Record<string, unknown>;

  if (b.csr === undefined || b.csr === null || b.csr === '') throw bad("missing required field 'csr'");
  if (typeof b.csr !== 'string') throw bad("field 'csr' must be a string");
  if (b['hardware-id'] === undefined || b['hardware-id'] === null || b['hardware-id'] === '')
    throw bad("missing required field 'hardware-id'");
  const hardwareId = tomlSafe('hardware-id', optionalString(b, 'hardware-id')!);
  if (!REQUEST_LIMITS.hardwareId.test(hardwareId))
    throw bad("field 'hardware-id' must be 1-64 letters, digits, '.', '_', '+' or '-' (a Yocto MACHINE name)");
  if ('group' in b) throw bad("field 'group' is not accepted: the server assigns device groups");

  const name = optionalString(b, 'name');
  if (name !== undefined && CONTROL.test(name)) throw bad("field 'name' contains a control character");
  if (name !== undefined && [...name].length > REQUEST_LIMITS.nameMax)
    throw bad(`field 'name' is longer than ${REQUEST_LIMITS.nameMax} characters`);
  const sotaConfigDir = tomlSafe('sota-config-dir', optionalString(b, 'sota-config-dir') || '/var/sota');
  if (!sotaConfigDir.startsWith('/')) throw bad("field 'sota-config-dir' must be an absolute path");
  if (
    sotaConfigDir.length > REQUEST_LIMITS.sotaDirMax ||
    !/^(\/[A-Za-z0-9._+-]+)+\/?$/.test(sotaConfigDir) ||
    /\/\.\.?(\/|$)/.test(sotaConfigDir)
  )
    throw bad(
      `field 'sota-config-dir' must be an absolute path of letters, digits, '.', '_', '+', '-' (no '.' or '..' parts, at most ${REQUEST_LIMITS.sotaDirMax})`,
    );
  const ostree = optionalString(b, 'use-ostree-server');
  if (ostree !== undefined && !['true', 'false', ''].includes(ostree)) throw bad('field \'use-ostree-server\' must be "true" or "false"');

  return {
    csr: b.csr,
    hardwareId,
    uuid: optionalString(b, 'uuid'),
    name: name || undefined,
    sotaConfigDir,
    overrides: parseOverrides(b.overrides),
  };
}

function parseOverrides(v: unknown): Overrides {
  if (v === undefined || v === null || v === '') return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw bad("field 'overrides' must be an object of sections");
  const out: Overrides = Object.create(null) as Overrides;
  const sections = Object.entries(v as Record<string, unknown>);
  if (sections.length > REQUEST_LIMITS.overrideSections)
    throw bad(`field 'overrides' has more than ${REQUEST_LIMITS.overrideSections} sections`);
  for (const [section, values] of sections) {
    if (!BARE_KEY.test(section) || OBJECT_INTERNALS.has(section)) throw bad(`override section '${clip(section)}' is not a valid name`);
    if (typeof values !== 'object' || values === null || Array.isArray(values))
      throw bad(`override section '${section}' must be an object`);
    const entries = Object.entries(values as Record<string, unknown>);
    if (entries.length > REQUEST_LIMITS.overrideKeysPerSection)
      throw bad(`override section '${section}' has more than ${REQUEST_LIMITS.overrideKeysPerSection} keys`);
    out[section] = Object.create(null) as Record<string, string>;
    for (const [key, value] of entries) {
      if (!BARE_KEY.test(key) || OBJECT_INTERNALS.has(key)) throw bad(`override key '${section}.${clip(key)}' is not a valid name`);
      if (typeof value !== 'string') throw bad(`override '${section}.${key}' must be a string`);
      if (CONTROL.test(value)) throw bad(`override '${section}.${key}' contains a newline or control character`);
      if (value.length > REQUEST_LIMITS.overrideValueMax)
        throw bad(`override '${section}.${key}' is longer than ${REQUEST_LIMITS.overrideValueMax} characters`);
      out[section][key] = value;
    }
  }
  return out;
}

const clip = (s: string): string => s.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 40);
