// X.509 v3 extensions, DER-encoded (RFC 5280 4.2).
import { hash } from 'node:crypto';
import { bitString, bool, children, decodeOne, expectTag, explicit, implicit, octets, oid, seq, TAG, uint } from './der.js';
import { OID } from './oids.js';

export function extension(extOid: string, critical: boolean, value: Uint8Array): Buffer {
  return critical ? seq(oid(extOid), bool(true), octets(value)) : seq(oid(extOid), octets(value));
}

export const KEY_USAGE = {
  digitalSignature: 0,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

export type KeyUsage = keyof typeof KEY_USAGE;

/** keyUsage as a DER named-bit BIT STRING (trailing zero bits dropped). */
export function keyUsage(usages: KeyUsage[]): Buffer {
  let bits = 0;
  for (const u of usages) bits |= 0x8000 >> KEY_USAGE[u];
  const bytes = bits & 0xff ? [bits >> 8, bits & 0xff] : [bits >> 8];
  const last = bytes[bytes.length - 1];
  let unused = 0;
  while (unused < 7 && !(last & (1 << unused))) unused++;
  return extension(OID.keyUsage, true, bitString(Uint8Array.from(bytes), unused));
}

export function extKeyUsage(purposes: string[], critical = true): Buffer {
  return extension(OID.extKeyUsage, critical, seq(...purposes.map((p) => oid(p))));
}

export function basicConstraints(ca: boolean, pathLen?: number): Buffer {
  const parts = ca ? [bool(true), ...(pathLen === undefined ? [] : [uint(pathLen)])] : [];
  return extension(OID.basicConstraints, true, seq(...parts));
}

export function subjectKeyIdentifier(keyId: Uint8Array): Buffer {
  return extension(OID.subjectKeyIdentifier, false, octets(keyId));
}

export function authorityKeyIdentifier(keyId: Uint8Array): Buffer {
  return extension(OID.authorityKeyIdentifier, false, seq(implicit(0, keyId)));
}

/** cRLDistributionPoints with one URI (RFC 5280 4.2.1.13): fullName [0] { uniformResourceIdentifier [6] }. */
export function crlDistributionPoint(uri: string): Buffer {
  return extension(OID.crlDistributionPoints, false, seq(seq(explicit(0, explicit(0, implicit(6, Buffer.from(uri, 'ascii')))))));
}

/** subjectAltName with DNS names [2] and IP addresses [7] (4 or 16 bytes). */
export function subjectAltName(dnsNames: string[], ips: Uint8Array[]): Buffer {
  return extension(
    OID.subjectAltName,
    false,
    seq(...dnsNames.map((n) => implicit(2, Buffer.from(n, 'ascii'))), ...ips.map((ip) => implicit(7, ip))),
  );
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value. */
export function keyIdentifier(spkiDer: Uint8Array): Buffer {
  const [, key] = children(expectTag(decodeOne(spkiDer), TAG.SEQUENCE, 'SubjectPublicKeyInfo'));
  expectTag(key, TAG.BIT_STRING, 'subjectPublicKey');
  // the one-shot form: no Hash object per device certificate
  return hash('sha1', key.body.subarray(1), 'buffer');
}
