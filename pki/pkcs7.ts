// Reading a certs-only PKCS#7 (CMS SignedData with no signers, RFC 5652 / RFC 7030
// §4.1.3), how EST carries certificates, with the DER reader alone: the device client
// reads one without a library. The server builds them with pkijs (pkcs7-build.ts).
import { children, decodeOid, decodeOne, DerError, expectTag, TAG, type Tlv } from './der.js';

export const SIGNED_DATA = '1.2.840.113549.1.7.2';

/** The certificates (DER) of a certs-only PKCS#7, in the order they are listed. */
export function readCertsOnlyPkcs7(der: Uint8Array): Buffer[] {
  const buf = Buffer.from(der);
  const info = children(expectTag(decodeOne(buf), TAG.SEQUENCE, 'ContentInfo'));
  if (decodeOid(expectTag(info[0], TAG.OID, 'contentType').body) !== SIGNED_DATA) throw new DerError('PKCS#7 is not SignedData');
  const [signed] = children(expectTag(info[1], 0xa0, 'content'));
  const parts = children(expectTag(signed, TAG.SEQUENCE, 'SignedData'));
  const certs = parts.find((p: Tlv) => p.tag === 0xa0);
  if (!certs) return [];
  return children(certs).map((c) => Buffer.from(c.raw));
}
