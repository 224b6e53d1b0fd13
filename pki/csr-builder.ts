// Building PKCS#10 requests: used by device-register and by tests.
import type { KeyObject } from 'node:crypto';
import { bitString, explicit, oid, seq, set, uint } from './der.js';
import { extKeyUsage, keyUsage } from './extensions.js';
import { encodeName, type NameAttribute } from './name.js';
import { OID } from './oids.js';
import { createKeySigner, type Signer } from './signer.js';

export interface CsrInput {
  /** The subject's attributes, or its DER as it stands in a certificate (a renewal keeps it byte for byte). */
  subject: NameAttribute[] | Uint8Array;
  /** A private key, or any signer (an HSM key). */
  key: KeyObject | Signer;
  /** Encoded Extension elements to request. */
  extensions?: Uint8Array[];
}

/** The extensions lmp-device-register requests: digitalSignature and clientAuth, both critical. */
export const DEVICE_CSR_EXTENSIONS = (): Buffer[] => [keyUsage(['digitalSignature']), extKeyUsage([OID.clientAuth], true)];

/** The subject lmp-device-register uses: CN=uuid, OU=factory[, businessCategory=production]. */
export function deviceSubject(uuid: string, factory: string, production: boolean): NameAttribute[] {
  return [
    { oid: OID.commonName, value: uuid },
    { oid: OID.organizationalUnit, value: factory },
    ...(production ? [{ oid: OID.businessCategory, value: 'production' }] : []),
  ];
}

export async function createCsr(input: CsrInput): Promise<Buffer> {
  const signer = 'sign' in input.key ? input.key : createKeySigner(input.key);
  const exts = input.extensions ?? [];
  const attributes = exts.length ? [seq(oid(OID.extensionRequest), set(seq(...exts)))] : [];
  const subject = input.subject instanceof Uint8Array ? input.subject : encodeName(input.subject);
  const info = seq(uint(0), subject, signer.spkiDer, explicit(0, ...attributes));
  const signature = await signer.sign(info);
  return seq(info, signer.algorithm.der, bitString(signature));
}
