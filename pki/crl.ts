// Certificate revocation lists (RFC 5280 §5, v2), built with @peculiar/asn1-x509's
// schemas and signed by the local CA's Signer, so a file key and an HSM key sign them
// the same way: CRL number, authority key identifier, thisUpdate/nextUpdate, and a
// reason code per entry.
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AuthorityKeyIdentifier,
  CRLNumber,
  CRLReasons,
  Extension,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLNumber,
  id_ce_cRLReasons,
  KeyIdentifier,
  Name,
  TBSCertList,
  Time,
} from '@peculiar/asn1-x509';
import type { Ca } from './ca.js';
import { bitString, children, decodeOne, seq, time, tlv, uintFromBytes } from './der.js';
import { extension } from './extensions.js';
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

/**
 * The revoked-certificate entries, encoded with the DER primitives the issuance path
 * uses: the schema library took 12-16 s for 100,000 entries (docs/performance.md: an
 * object graph per entry, then garbage collection and buffer concatenation), these take
 * well under a second. The CRL around them is the library's, and the tests read it back
 * with @peculiar/x509 and OpenSSL.
 */
const reasonExtensions = new Map<RevocationReason, Buffer>();
function entriesDer(entries: CrlEntry[]): Buffer {
  const reasonExt = (r: RevocationReason): Buffer => {
    let e = reasonExtensions.get(r);
    if (!e) reasonExtensions.set(r, (e = seq(extension(id_ce_cRLReasons, false, tlv(0x0a, Uint8Array.of(CRLReasons[r]))))));
    return e;
  };
  const parts = entries.map((e) =>
    seq(
      uintFromBytes(Buffer.from(e.serial.length % 2 ? '0' + e.serial : e.serial, 'hex')),
      time(e.revokedAt),
      // RFC 5280: the reason code is omitted rather than given as unspecified
      ...(e.reason === 'unspecified' ? [] : [reasonExt(e.reason)]),
    ),
  );
  return tlv(0x30, Buffer.concat(parts));
}

/** A signed CRL, DER. */
export async function createCrl(ca: Ca, input: CrlInput): Promise<Buffer> {
  const signatureAlgorithm = AsnConvert.parse(ca.signer.algorithm.der, AlgorithmIdentifier);
  const frame = Buffer.from(
    AsnConvert.serialize(
      new TBSCertList({
        version: 1, // v2
        signature: signatureAlgorithm,
        issuer: AsnConvert.parse(ca.cert.subjectDer, Name),
        thisUpdate: new Time(input.thisUpdate),
        nextUpdate: new Time(input.nextUpdate),
        crlExtensions: [
          ext(id_ce_authorityKeyIdentifier, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(ca.keyId) })),
          ext(id_ce_cRLNumber, new CRLNumber(input.number)),
        ],
      }),
    ),
  );
  // revokedCertificates goes between nextUpdate and the [0] extensions
  const fields = children(decodeOne(frame)).map((f) => f.raw);
  const tbs = input.entries.length ? seq(...fields.slice(0, 5), entriesDer(input.entries), ...fields.slice(5)) : frame;
  const signature = await ca.signer.sign(tbs);
  return seq(tbs, ca.signer.algorithm.der, bitString(signature));
}
