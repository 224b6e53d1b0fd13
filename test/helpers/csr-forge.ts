// Forging CSRs for refusal tests: a real signature over whatever structure the test
// builds, so each case fails for the one reason it names and no other.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { DEVICE_CSR_EXTENSIONS, deviceSubject } from '../../pki/csr-builder.js';
import { bitString, explicit, oid, pem, seq, set, tlv, uint } from '../../pki/der.js';
import { encodeName, type NameAttribute } from '../../pki/name.js';
import { OID } from '../../pki/oids.js';
import { createKeySigner } from '../../pki/signer.js';

export interface Forge {
  key?: KeyObject;
  /** The subject as attributes (one per RDN) or as raw DER. */
  subject?: NameAttribute[] | Buffer;
  version?: Buffer;
  /** The attributes element ([0] by default, with the device's extension request). */
  attributes?: Buffer;
  /** Replaces the CertificationRequestInfo after it is built (the signature covers the result). */
  info?: (info: Buffer) => Buffer;
  /** The signatureAlgorithm element (the key's own by default). */
  algorithm?: Buffer;
  /** Replaces the signature value. */
  signature?: (sig: Buffer) => Buffer;
  /** Extra elements after the three of a CertificationRequest. */
  trailing?: Buffer[];
}

export const p256Key = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

export async function forgeCsrDer(uuid: string, factory: string, f: Forge = {}): Promise<Buffer> {
  const signer = createKeySigner(f.key ?? p256Key());
  const subject = Buffer.isBuffer(f.subject) ? f.subject : encodeName(f.subject ?? deviceSubject(uuid, factory, false));
  const attributes = f.attributes ?? explicit(0, seq(oid(OID.extensionRequest), set(seq(...DEVICE_CSR_EXTENSIONS()))));
  let info = seq(f.version ?? uint(0), subject, signer.spkiDer, attributes);
  if (f.info) info = f.info(info);
  let sig = await signer.sign(info);
  if (f.signature) sig = f.signature(sig);
  return seq(info, f.algorithm ?? signer.algorithm.der, bitString(sig), ...(f.trailing ?? []));
}

export const forgeCsrPem = async (uuid: string, factory: string, f: Forge = {}): Promise<string> =>
  pem('CERTIFICATE REQUEST', await forgeCsrDer(uuid, factory, f));

/** One attribute per RDN, raw: any tag, any OID bytes. */
export const rawAtv = (oidBody: Buffer, valueTag: number, value: Buffer): Buffer => seq(tlv(0x06, oidBody), tlv(valueTag, value));

/** Re-encodes the first element's length in long form with `extra` leading zero octets or one octet too many. */
export function nonMinimalLength(der: Buffer): Buffer {
  // the outer SEQUENCE's length, written with one more octet than needed
  const lenByte = der[1];
  const n = lenByte & 0x80 ? lenByte & 0x7f : 0;
  const len = n ? der.subarray(2, 2 + n) : Buffer.from([lenByte]);
  return Buffer.concat([Buffer.from([der[0], 0x80 | (len.length + 1), 0x00]), len, der.subarray(2 + n)]);
}
