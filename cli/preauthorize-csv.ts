// The pre-authorization list: CSV lines `uuid,key_sha256,hardware_id,name,lot` (every
// field but the UUID may be empty; a first line starting with `uuid` is a header).
// All lines are checked before anything is imported; the first bad line is named.
import { KilnError } from '../pki/errors.js';
import { isCanonicalUuid } from '../pki/policy.js';
import type { Preauthorization } from '../server/db/store.js';
import { REQUEST_LIMITS } from '../server/sign-request.js';

export type PreauthRow = Omit<Preauthorization, 'createdAt'>;

/** One CSV line's fields: commas separate, double quotes quote (with "" inside). */
function fieldsOf(line: string): string[] | undefined {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let v = '';
    if (line[i] === '"') {
      for (i++; ; i++) {
        if (i >= line.length) return undefined; // unterminated quote
        if (line[i] === '"') {
          if (line[i + 1] === '"') ((v += '"'), i++);
          else break;
        } else v += line[i];
      }
      i++;
      if (i < line.length && line[i] !== ',') return undefined;
    } else {
      const end = line.indexOf(',', i);
      v = end < 0 ? line.slice(i) : line.slice(i, end);
      if (v.includes('"')) return undefined;
      i = end < 0 ? line.length : end;
    }
    out.push(v.trim());
    if (i >= line.length) return out;
    i++; // the comma
  }
}

export function parsePreauthCsv(text: string, file: string, knownLots: Set<string>): PreauthRow[] {
  const rows: PreauthRow[] = [];
  const seen = new Set<string>();
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    const at = `${file} line ${index + 1}`;
    if (line.trim() === '' || line.startsWith('#')) return;
    if (index === 0 && /^\s*uuid\s*(,|$)/i.test(line)) return;
    const f = fieldsOf(line);
    const bad = (why: string): never => {
      throw new KilnError('bad_request', `${at}: ${why}; nothing was imported`);
    };
    if (!f) bad('not a CSV line (unbalanced quotes)');
    if (f!.length > 5) bad(`${f!.length} fields, expected at most 5 (uuid,key_sha256,hardware_id,name,lot)`);
    const [uuid, key = '', hwid = '', name = '', lot = ''] = f!;
    if (!isCanonicalUuid(uuid)) bad(`"${uuid.slice(0, 40)}" is not a device UUID`);
    const id = uuid.toLowerCase();
    if (seen.has(id)) bad(`device ${id} is listed twice`);
    seen.add(id);
    const keyHex = key.replace(/:/g, '').toLowerCase();
    if (key && !/^[0-9a-f]{64}$/.test(keyHex))
      bad('key_sha256 must be 64 hex digits (the SHA-256 of the public key, SubjectPublicKeyInfo DER)');
    if (hwid && !REQUEST_LIMITS.hardwareId.test(hwid)) bad(`hardware id "${hwid.slice(0, 40)}" is not a Yocto MACHINE name`);
    if (name && (/[\u0000-\u001f\u007f]/.test(name) || [...name].length > REQUEST_LIMITS.nameMax))
      bad('name has control characters or is too long');
    if (lot && !knownLots.has(lot)) bad(`no lot named ${lot.slice(0, 64)}`);
    rows.push({ uuid: id, keySha256: key ? keyHex : null, hardwareId: hwid || null, name: name || null, lot: lot || null });
  });
  return rows;
}
