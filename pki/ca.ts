// A signing CA: its certificate plus a signer, checked to belong together.
import { createPublicKey } from 'node:crypto';
import { certificatePem, parseCertificate, type ParsedCertificate } from './certificate.js';
import { KilnError } from './errors.js';
import { keyIdentifier } from './extensions.js';
import { nameValue } from './name.js';
import { OID } from './oids.js';
import type { Signer } from './signer.js';

export interface Ca {
  cert: ParsedCertificate;
  certPem: string;
  signer: Signer;
  /** The key identifier issued certificates carry as authorityKeyIdentifier. */
  keyId: Buffer;
  /** The OU of the CA subject: the factory name. */
  factory: string;
}

export function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  const norm = (k: Uint8Array): Buffer =>
    createPublicKey({ key: Buffer.from(k), format: 'der', type: 'spki' }).export({ type: 'spki', format: 'der' });
  return norm(a).equals(norm(b));
}

export function createCa(certDer: Uint8Array, signer: Signer, what = 'CA'): Ca {
  const cert = parseCertificate(certDer);
  if (!cert.isCa) throw new KilnError('config', `${what} certificate does not have basicConstraints CA:TRUE`);
  if (!sameKey(cert.spkiDer, signer.spkiDer)) throw new KilnError('config', `${what} key does not match its certificate`);
  const factory = nameValue(cert.subject, OID.organizationalUnit);
  if (!factory) throw new KilnError('config', `${what} certificate subject has no OU (the factory name)`);
  return { cert, certPem: certificatePem(cert.der), signer, keyId: cert.subjectKeyId ?? keyIdentifier(cert.spkiDer), factory };
}
