// Minimal DER reader and writer: just what certificate issuance needs.
// Reading keeps raw slices (subarrays of the input) so issuance can copy
// the CSR's subject and public key into the certificate byte for byte.
// Reading is strict DER (X.690 §10): definite lengths in the fewest octets,
// minimal INTEGERs, well-formed OIDs, nothing after an element's end. What
// reads two ways is refused, since Kiln copies bytes it has checked.

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

export class DerError extends Error {}

/** One decoded TLV. `raw` is the whole element, `body` its contents. */
export interface Tlv {
  tag: number;
  raw: Uint8Array;
  body: Uint8Array;
}

/** Reads the TLV at `offset`; returns it and the offset after it. */
export function readTlv(buf: Uint8Array, offset = 0): { tlv: Tlv; next: number } {
  if (offset + 2 > buf.length) throw new DerError('truncated DER');
  const tag = buf[offset];
  if ((tag & 0x1f) === 0x1f) throw new DerError('high-tag-number form is not supported');
  let len = buf[offset + 1];
  let pos = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError('indefinite length is not DER');
    if (n > 4) throw new DerError('unsupported DER length');
    if (pos + n > buf.length) throw new DerError('truncated DER');
    if (buf[pos] === 0) throw new DerError('non-minimal DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos + i];
    if (len < 0x80) throw new DerError('non-minimal DER length');
    pos += n;
  }
  const end = pos + len;
  if (end > buf.length) throw new DerError('truncated DER');
  return { tlv: { tag, raw: buf.subarray(offset, end), body: buf.subarray(pos, end) }, next: end };
}

/** Decodes exactly one element spanning the whole buffer. */
export function decodeOne(buf: Uint8Array): Tlv {
  const { tlv, next } = readTlv(buf, 0);
  if (next !== buf.length) throw new DerError('trailing data after DER element');
  return tlv;
}

/** The child elements of a constructed element. */
export function children(tlv: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let off = 0;
  while (off < tlv.body.length) {
    const { tlv: child, next } = readTlv(tlv.body, off);
    out.push(child);
    off = next;
  }
  return out;
}

export function expectTag(tlv: Tlv | undefined, tag: number, what: string): Tlv {
  if (!tlv || tlv.tag !== tag) throw new DerError(`expected ${what}`);
  return tlv;
}

/** The children of a constructed element, which must number `min` to `max`. */
export function fields(tlv: Tlv, what: string, min: number, max = min): Tlv[] {
  const out = children(tlv);
  if (out.length < min || out.length > max)
    throw new DerError(`${what} has ${out.length} elements, expected ${min === max ? min : `${min} to ${max}`}`);
  return out;
}

/** An INTEGER's contents, checked to be minimal two's complement (X.690 §8.3.2). */
export function integerBody(tlv: Tlv | undefined, what: string): Uint8Array {
  const b = expectTag(tlv, TAG.INTEGER, what).body;
  if (b.length === 0) throw new DerError(`${what} is an empty INTEGER`);
  if (b.length > 1 && ((b[0] === 0 && !(b[1] & 0x80)) || (b[0] === 0xff && b[1] & 0x80)))
    throw new DerError(`${what} is not a minimal INTEGER`);
  return b;
}

// ---- writing -------------------------------------------------------------

/** The DER length octets of `len`. */
function lengthBytes(len: number): number[] {
  if (len < 0x80) return [len];
  const bytes: number[] = [];
  for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

/** One element: tag, length, and the parts as its body, in a single allocation (the issuance hot path). */
export function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  let bodyLength = 0;
  for (const p of parts) bodyLength += p.length;
  const header = lengthBytes(bodyLength);
  const out = Buffer.allocUnsafe(1 + header.length + bodyLength);
  out[0] = tag;
  for (let i = 0; i < header.length; i++) out[1 + i] = header[i];
  let off = 1 + header.length;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export const seq = (...parts: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...parts);
export const set = (...parts: Uint8Array[]): Buffer => tlv(TAG.SET, ...parts);
export const octets = (b: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, b);
export const bitString = (b: Uint8Array, unused = 0): Buffer => tlv(TAG.BIT_STRING, Buffer.from([unused]), b);
export const utf8 = (s: string): Buffer => tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8'));
export const ia5 = (s: string): Buffer => tlv(TAG.IA5_STRING, Buffer.from(s, 'ascii'));
export const bool = (v: boolean): Buffer => tlv(TAG.BOOLEAN, Buffer.from([v ? 0xff : 0x00]));
export const nullValue = (): Buffer => Buffer.from([TAG.NULL, 0]);
/** Context-specific constructed tag [n] (EXPLICIT wrapper). */
export const explicit = (n: number, ...parts: Uint8Array[]): Buffer => tlv(0xa0 | n, ...parts);
/** Context-specific primitive tag [n] (IMPLICIT primitive). */
export const implicit = (n: number, body: Uint8Array): Buffer => tlv(0x80 | n, body);

/** A non-negative INTEGER from big-endian magnitude bytes. */
export function uintFromBytes(bytes: Uint8Array): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const mag = Buffer.from(bytes.subarray(i));
  return tlv(TAG.INTEGER, mag[0] & 0x80 ? Buffer.concat([Buffer.from([0]), mag]) : mag);
}

export function uint(n: number | bigint): Buffer {
  let v = BigInt(n);
  if (v < 0n) throw new DerError('negative integer');
  const bytes: number[] = [];
  do {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  return uintFromBytes(Uint8Array.from(bytes));
}

const encodedOids = new Map<string, Buffer>();

/** An OBJECT IDENTIFIER element; our own OIDs are a small set, so each is encoded once. Do not modify the result. */
export function oid(dotted: string): Buffer {
  let out = encodedOids.get(dotted);
  if (!out) {
    out = encodeOid(dotted);
    if (encodedOids.size < 1024) encodedOids.set(dotted, out);
  }
  return out;
}

function encodeOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => BigInt(a));
  if (arcs.length < 2) throw new DerError(`bad OID ${dotted}`);
  const out: number[] = [];
  const push = (v: bigint): void => {
    const chunk: number[] = [Number(v & 0x7fn)];
    for (v >>= 7n; v > 0n; v >>= 7n) chunk.unshift(Number(v & 0x7fn) | 0x80);
    out.push(...chunk);
  };
  push(arcs[0] * 40n + arcs[1]);
  for (const a of arcs.slice(2)) push(a);
  return tlv(TAG.OID, Uint8Array.from(out));
}

/** Throws unless `body` is a well-formed OID: non-empty, minimal arcs, the last arc terminated. */
function checkOid(body: Uint8Array): void {
  if (body.length === 0) throw new DerError('empty OID');
  if (body[body.length - 1] & 0x80) throw new DerError('OID ends inside an arc');
  for (let i = 0; i < body.length; i++)
    if (body[i] === 0x80 && (i === 0 || !(body[i - 1] & 0x80))) throw new DerError('non-minimal OID arc');
}

export function decodeOid(body: Uint8Array): string {
  checkOid(body);
  // arcs that fit in 2^49 (every OID in practice) stay plain numbers
  const arcs: number[] = [];
  let v = 0;
  for (const b of body) {
    if (v >= 2 ** 42) return decodeOidBig(body);
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  if (arcs.length === 0) throw new DerError('empty OID');
  const first = arcs[0] < 80 ? Math.floor(arcs[0] / 40) : 2;
  arcs[0] -= first * 40;
  return first + '.' + arcs.join('.');
}

function decodeOidBig(body: Uint8Array): string {
  const arcs: bigint[] = [];
  let v = 0n;
  for (const b of body) {
    v = (v << 7n) | BigInt(b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0n;
    }
  }
  if (arcs.length === 0) throw new DerError('empty OID');
  const first = arcs[0] < 80n ? arcs[0] / 40n : 2n;
  return [first, arcs[0] - first * 40n, ...arcs.slice(1)].join('.');
}

/** X.509 Time: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5). */
export function time(d: Date): Buffer {
  const two = (n: number): string => (n < 10 ? '0' : '') + n;
  const year = d.getUTCFullYear();
  const rest =
    two(d.getUTCMonth() + 1) + two(d.getUTCDate()) + two(d.getUTCHours()) + two(d.getUTCMinutes()) + two(d.getUTCSeconds()) + 'Z';
  if (year >= 1950 && year < 2050) return tlv(TAG.UTC_TIME, Buffer.from(two(year % 100) + rest, 'ascii'));
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(String(year).padStart(4, '0') + rest, 'ascii'));
}

export function decodeTime(t: Tlv): Date {
  const s = Buffer.from(t.body).toString('ascii');
  const m = t.tag === TAG.UTC_TIME ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s) : /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s);
  if (!m) throw new DerError('bad time');
  let year = Number(m[1]);
  if (t.tag === TAG.UTC_TIME) year += year < 50 ? 2000 : 1900;
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

export function pem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** Decodes the first PEM block with one of `labels`; null when there is none. */
export function unpem(text: string, labels: string[]): Buffer | null {
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (labels.includes(m[1])) {
      const b64 = m[2].replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) return null;
      return Buffer.from(b64, 'base64');
    }
  }
  return null;
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Decodes text that is exactly one PEM block labelled `label`, with nothing but
 * whitespace around it and only base64 and whitespace inside; linear in the
 * input (no backtracking). Throws DerError with the reason.
 */
export function unpemStrict(text: string, label: string): Buffer {
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const start = text.indexOf(begin);
  if (start < 0) throw new DerError(`no ${begin} line`);
  if (text.slice(0, start).trim() !== '') throw new DerError(`text before ${begin}`);
  const bodyStart = start + begin.length;
  const stop = text.indexOf(end, bodyStart);
  if (stop < 0) throw new DerError(`no ${end} line`);
  if (text.slice(stop + end.length).trim() !== '') throw new DerError(`text after ${end}`);
  const b64 = text.slice(bodyStart, stop).replace(/[ \t\r\n]+/g, '');
  if (b64.includes('-----')) throw new DerError('more than one PEM block');
  if (b64.length === 0 || b64.length % 4 !== 0 || !B64.test(b64)) throw new DerError('PEM body is not base64');
  const der = Buffer.from(b64, 'base64');
  // Node's decoder skips what it does not understand: insist the text was canonical
  if (der.toString('base64') !== b64) throw new DerError('PEM body is not canonical base64');
  return der;
}
