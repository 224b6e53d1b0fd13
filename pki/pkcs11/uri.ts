// RFC 7512 PKCS#11 URIs: `pkcs11:token=kiln;object=local-ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin`
import { KilnError, unreadable } from '../errors.js';

export interface Pkcs11Uri {
  token?: string;
  object?: string;
  /** CKA_ID bytes */
  id?: Buffer;
  serial?: string;
  slotId?: number;
  modulePath?: string;
  /** `file:` path holding the PIN (preferred) */
  pinSource?: string;
  /** the PIN itself (discouraged: it ends up in process listings and shell history) */
  pinValue?: string;
}

const bad = (msg: string): KilnError => new KilnError('config', `PKCS#11 URI: ${msg}`);

function decode(v: string, what: string): Buffer {
  if (/%(?![0-9A-Fa-f]{2})/.test(v)) throw bad(`bad percent-encoding in ${what}`);
  const bytes: number[] = [];
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '%') {
      bytes.push(parseInt(v.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(v[i], 'utf8'));
    }
  }
  return Buffer.from(bytes);
}

export const isPkcs11Uri = (s: string): boolean => s.startsWith('pkcs11:');

export function parsePkcs11Uri(text: string): Pkcs11Uri {
  if (!isPkcs11Uri(text)) throw bad('must start with pkcs11:');
  const [path, query = ''] = text.slice('pkcs11:'.length).split('?', 2);
  const out: Pkcs11Uri = {};
  const pairs = (s: string, sep: string): [string, string][] =>
    s
      .split(sep)
      .filter(Boolean)
      .map((p) => {
        const eq = p.indexOf('=');
        if (eq <= 0) throw bad(`"${p}" is not name=value`);
        return [p.slice(0, eq), p.slice(eq + 1)];
      });
  for (const [k, v] of pairs(path, ';')) {
    if (k === 'token') out.token = decode(v, k).toString('utf8');
    else if (k === 'object') out.object = decode(v, k).toString('utf8');
    else if (k === 'id') out.id = decode(v, k);
    else if (k === 'serial') out.serial = decode(v, k).toString('utf8');
    else if (k === 'slot-id') {
      if (!/^\d+$/.test(v)) throw bad('slot-id must be a number');
      out.slotId = Number(v);
    } else if (!['manufacturer', 'model', 'type', 'library-manufacturer', 'library-description', 'library-version'].includes(k)) {
      throw bad(`unknown attribute "${k}"`);
    }
  }
  for (const [k, v] of pairs(query, '&')) {
    if (k === 'module-path') out.modulePath = decode(v, k).toString('utf8');
    else if (k === 'pin-source') out.pinSource = decode(v, k).toString('utf8');
    else if (k === 'pin-value') out.pinValue = decode(v, k).toString('utf8');
    else if (k !== 'module-name') throw bad(`unknown query attribute "${k}"`);
  }
  if (!out.modulePath) throw bad('module-path is required (e.g. ?module-path=/usr/lib/softhsm/libsofthsm2.so)');
  if (out.token === undefined && out.serial === undefined && out.slotId === undefined)
    throw bad('name the token (token=, serial= or slot-id=)');
  if (out.object === undefined && out.id === undefined) throw bad('name the key (object= or id=)');
  if (out.pinSource === undefined && out.pinValue === undefined)
    throw bad("no PIN: add ?pin-source=file:/path/to/pin-file (a file readable only by the server's user)");
  return out;
}

/** Where the PIN comes from, for reading at start-up: a file path or the value. */
export function pinOf(uri: Pkcs11Uri, readFile: (path: string) => string): string | undefined {
  if (uri.pinSource) {
    const path = uri.pinSource.startsWith('file:') ? uri.pinSource.slice('file:'.length).replace(/^\/\/(?=\/)/, '') : uri.pinSource;
    try {
      return readFile(path).replace(/\r?\n$/, '');
    } catch (err) {
      throw unreadable('the PIN file', path, err);
    }
  }
  return uri.pinValue;
}
