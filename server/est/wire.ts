// EST's wire format (RFC 7030 §4): base64-encoded DER in (PKCS#10), the media types
// of the answers, and the CSR attributes Kiln's policy asks for.
import { oid, seq, set } from '../../pki/der.js';
import { KilnError } from '../../pki/errors.js';
import { OID } from '../../pki/oids.js';

export const PKCS7_TYPE = 'application/pkcs7-mime; smime-type=certs-only';
export const CSRATTRS_TYPE = 'application/csrattrs';
export const PKCS10_TYPE = /^application\/pkcs10\s*(;|$)/i;

/** The DER of a base64 body (line breaks allowed, as RFC 2045 writes it). */
export function decodeBase64Body(body: string, what: string): Buffer {
  const text = body.replace(/[\r\n\t ]+/g, '');
  if (text.length === 0) throw new KilnError('bad_request', `${what} is empty (expected base64 DER)`);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 === 1)
    throw new KilnError('bad_request', `${what} is not base64 (RFC 7030: base64-encoded DER)`);
  return Buffer.from(text, 'base64');
}

const EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const PRIME256V1 = '1.2.840.10045.3.1.7';
const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

/**
 * CsrAttrs (RFC 7030 §4.5.2): a P-256 key signed with ECDSA-SHA256, and the subject
 * attributes a device CSR carries (CN: the device UUID, OU: the factory).
 */
export const csrAttrs = (): Buffer =>
  seq(oid(ECDSA_WITH_SHA256), seq(oid(EC_PUBLIC_KEY), set(oid(PRIME256V1))), oid(OID.commonName), oid(OID.organizationalUnit));
