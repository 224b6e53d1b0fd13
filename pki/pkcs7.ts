// Certs-only PKCS#7 (CMS SignedData with no signers, RFC 5652 / RFC 7030 §4.1.3):
// how EST carries certificates. Built with pkijs; read back with the DER reader, so
// the device client can read one without the library.
import * as pkijs from 'pkijs';
import { children, decodeOid, decodeOne, DerError, expectTag, TAG, type Tlv } from './der.js';

const SIGNED_DATA = '1.2.840.113549.1.7.2';
const DATA = '1.2.840.113549.1.7.1';

/** A degenerate SignedData holding the given certificates (DER), in order. */
export function certsOnlyPkcs7(certDers: Uint8Array[]): Buffer {
  const signed = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: DATA }),
    certificates: certDers.map((d) => pkijs.Certificate.fromBER(new Uint8Array(d))),
    digestAlgorithms: [],
    signerInfos: [],
  });
  const info = new pkijs.ContentInfo({ contentType: SIGNED_DATA, content: signed.toSchema(true) });
  return Buffer.from(info.toSchema().toBER(false));
}

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
