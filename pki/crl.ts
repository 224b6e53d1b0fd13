// Certificate revocation lists (RFC 5280 §5, v2), built with @peculiar/asn1-x509's
// schemas and signed by the local CA's Signer, so a file key and an HSM key sign them
// the same way: CRL number, authority key identifier, thisUpdate/nextUpdate, and a
// reason code per entry.
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AuthorityKeyIdentifier,
  CertificateList,
  CRLNumber,
  CRLReason,
  CRLReasons,
  Extension,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLNumber,
  id_ce_cRLReasons,
  KeyIdentifier,
  Name,
  RevokedCertificate,
  TBSCertList,
  Time,
} from '@peculiar/asn1-x509';
import type { Ca } from './ca.js';
import { KilnError } from './errors.js';

/** The reasons an operator may give (RFC 5280 §5.3.1; certificateHold is not offered: revocation here is final). */
export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'privilegeWithdrawn',
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export function parseRevocationReason(v: string): RevocationReason {
  if (!(REVOCATION_REASONS as readonly string[]).includes(v))
    throw new KilnError('usage', `revocation reason ${JSON.stringify(v.slice(0, 40))}: expected ${REVOCATION_REASONS.join(', ')}`);
  return v as RevocationReason;
}

export interface CrlEntry {
  /** The certificate's serial, hex */
  serial: string;
  revokedAt: Date;
  reason: RevocationReason;
}

export interface CrlInput {
  /** Monotonic CRL number */
  number: number;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: CrlEntry[];
}

const ext = (id: string, value: object): Extension =>
  new Extension({ extnID: id, critical: false, extnValue: new OctetString(AsnConvert.serialize(value)) });

/** The reason-code extension, encoded once per reason (there are six), not once per entry. */
const reasonExtensions = new Map<RevocationReason, Extension>();
const reasonExtension = (r: RevocationReason): Extension => {
  let e = reasonExtensions.get(r);
  if (!e) reasonExtensions.set(r, (e = ext(id_ce_cRLReasons, new CRLReason(CRLReasons[r]))));
  return e;
};

/** A signed CRL, DER. */
export async function createCrl(ca: Ca, input: CrlInput): Promise<Buffer> {
  const signatureAlgorithm = AsnConvert.parse(ca.signer.algorithm.der, AlgorithmIdentifier);
  const tbs = new TBSCertList({
    version: 1, // v2
    signature: signatureAlgorithm,
    issuer: AsnConvert.parse(ca.cert.subjectDer, Name),
    thisUpdate: new Time(input.thisUpdate),
    nextUpdate: new Time(input.nextUpdate),
    revokedCertificates: input.entries.length
      ? input.entries.map(
          (e) =>
            new RevokedCertificate({
              userCertificate: positiveInteger(e.serial),
              revocationDate: new Time(e.revokedAt),
              // RFC 5280: the reason code is omitted rather than given as unspecified
              crlEntryExtensions: e.reason === 'unspecified' ? undefined : [reasonExtension(e.reason)],
            }),
        )
      : undefined,
    crlExtensions: [
      ext(id_ce_authorityKeyIdentifier, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(ca.keyId) })),
      ext(id_ce_cRLNumber, new CRLNumber(input.number)),
    ],
  });
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const signature = await ca.signer.sign(tbsDer);
  const list = new CertificateList({ tbsCertList: tbs, signatureAlgorithm, signature: new Uint8Array(signature).buffer });
  return Buffer.from(AsnConvert.serialize(list));
}

/** INTEGER contents for a serial given in hex: a leading zero byte when the top bit is set. */
function positiveInteger(hex: string): ArrayBuffer {
  const bytes = Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex');
  const out = bytes[0] & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
  return new Uint8Array(out).buffer;
}
