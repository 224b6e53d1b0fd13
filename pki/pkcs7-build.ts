// Building a certs-only PKCS#7 (CMS SignedData with no signers), with pkijs: what EST
// answers with. The server's side only; the device reads them with pkcs7.ts.
import * as pkijs from 'pkijs';
import { SIGNED_DATA } from './pkcs7.js';

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
