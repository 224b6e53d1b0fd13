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
  if ('group' in b) throw bad("field 'group' is not accepted: the server assigns device groups");

  const name = optionalString(b, 'name');
  if (name !== undefined && CONTROL.test(name)) throw bad("field 'name' contains a control character");
  const sotaConfigDir = tomlSafe('sota-config-dir', optionalString(b, 'sota-config-dir') || '/var/sota');
  if (!sotaConfigDir.startsWith('/')) throw bad("field 'sota-config-dir' must be an absolute path");
  optionalString(b, 'use-ostree-server');

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
  for (const [section, values] of Object.entries(v as Record<string, unknown>)) {
    if (!BARE_KEY.test(section)) throw bad(`override section '${clip(section)}' is not a valid name`);
    if (typeof values !== 'object' || values === null || Array.isArray(values))
      throw bad(`override section '${section}' must be an object`);
    out[section] = Object.create(null) as Record<string, string>;
    for (const [key, value] of Object.entries(values as Record<string, unknown>)) {
      if (!BARE_KEY.test(key)) throw bad(`override key '${section}.${clip(key)}' is not a valid name`);
      if (typeof value !== 'string') throw bad(`override '${section}.${key}' must be a string`);
      if (CONTROL.test(value)) throw bad(`override '${section}.${key}' contains a newline or control character`);
      out[section][key] = value;
    }
  }
  return out;
}

const clip = (s: string): string => s.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 40);
