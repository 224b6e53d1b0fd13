// Reading certificates (read-only view) and assembling new ones from a template.
import {
  bitString,
  children,
  decodeOid,
  decodeOne,
  decodeTime,
  DerError,
  explicit,
  expectTag,
  pem,
  seq,
  TAG,
  time,
  uint,
  uintFromBytes,
  unpem,
  type Tlv,
} from './der.js';
import { csrSignatureRefused, ecSignatureCheck, unreadableCsrKey, verifyCsrSignature, type EcVerifier, type ParsedCsr } from './csr.js';
import { decodeName, type NameAttribute } from './name.js';
import { OID } from './oids.js';
import { serialHex } from './serial.js';
import type { Signer } from './signer.js';

export interface ParsedCertificate {
  der: Buffer;
  serialHex: string;
  issuerDer: Buffer;
  subjectDer: Buffer;
  subject: NameAttribute[];
  issuer: NameAttribute[];
  notBefore: Date;
  notAfter: Date;
  spkiDer: Buffer;
  /** Extension values by OID (the OCTET STRING contents) with their criticality. */
  extensions: Map<string, { critical: boolean; value: Buffer }>;
  isCa: boolean;
  pathLen?: number;
  subjectKeyId?: Buffer;
  dnsNames: string[];
}

export function parseCertificatePem(text: string): ParsedCertificate {
  const der = unpem(text, ['CERTIFICATE']);
  if (!der) throw new DerError('no PEM certificate found');
  return parseCertificate(der);
}

/** Splits a PEM bundle into its certificates (DER). */
export function pemCertificates(text: string): Buffer[] {
  const out: Buffer[] = [];
  const re = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(Buffer.from(m[1].replace(/\s+/g, ''), 'base64'));
  return out;
}

export function parseCertificate(input: Uint8Array): ParsedCertificate {
  const der = Buffer.from(input);
  const [tbs] = children(expectTag(decodeOne(der), TAG.SEQUENCE, 'Certificate'));
  const fields = children(expectTag(tbs, TAG.SEQUENCE, 'TBSCertificate'));
  let i = fields[0]?.tag === 0xa0 ? 1 : 0;
  const serial = expectTag(fields[i++], TAG.INTEGER, 'serialNumber');
  i++; // signature algorithm
  const issuer = expectTag(fields[i++], TAG.SEQUENCE, 'issuer');
  const validity = children(expectTag(fields[i++], TAG.SEQUENCE, 'validity'));
  const subject = expectTag(fields[i++], TAG.SEQUENCE, 'subject');
  const spki = expectTag(fields[i++], TAG.SEQUENCE, 'subjectPublicKeyInfo');
  const extensions = new Map<string, { critical: boolean; value: Buffer }>();
  for (const f of fields.slice(i)) {
    if (f.tag !== 0xa3) continue;
    for (const ext of children(children(f)[0])) readExtension(ext, extensions);
  }
  const cert: ParsedCertificate = {
    der,
    serialHex: serialHex(serial.body),
    issuerDer: Buffer.from(issuer.raw),
    subjectDer: Buffer.from(subject.raw),
    subject: decodeName(subject),
    issuer: decodeName(issuer),
    notBefore: decodeTime(validity[0]),
    notAfter: decodeTime(validity[1]),
    spkiDer: Buffer.from(spki.raw),
    extensions,
    isCa: false,
    dnsNames: [],
  };
  const bc = extensions.get(OID.basicConstraints);
  if (bc) {
    const parts = children(decodeOne(bc.value));
    cert.isCa = parts[0]?.tag === TAG.BOOLEAN && parts[0].body[0] !== 0;
    const pl = parts.find((p) => p.tag === TAG.INTEGER);
    if (pl) cert.pathLen = Number(BigInt('0x' + Buffer.from(pl.body).toString('hex')));
  }
  const ski = extensions.get(OID.subjectKeyIdentifier);
  if (ski) cert.subjectKeyId = Buffer.from(decodeOne(ski.value).body);
  const san = extensions.get(OID.subjectAltName);
  if (san) {
    for (const gn of children(decodeOne(san.value))) {
      if (gn.tag === 0x82) cert.dnsNames.push(Buffer.from(gn.body).toString('ascii'));
    }
  }
  return cert;
}

function readExtension(ext: Tlv, into: Map<string, { critical: boolean; value: Buffer }>): void {
  const parts = children(expectTag(ext, TAG.SEQUENCE, 'Extension'));
  const id = decodeOid(expectTag(parts[0], TAG.OID, 'extnID').body);
  const critical = parts.length === 3 && parts[1].tag === TAG.BOOLEAN && parts[1].body[0] !== 0;
  const value = expectTag(parts[parts.length - 1], TAG.OCTET_STRING, 'extnValue');
  into.set(id, { critical, value: Buffer.from(value.body) });
}

/** Everything that goes into a TBSCertificate, already DER where it is copied verbatim. */
export interface CertificateTemplate {
  /** Serial magnitude, big-endian, positive. */
  serial: Uint8Array;
  issuerDer: Uint8Array;
  subjectDer: Uint8Array;
  spkiDer: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  /** Encoded Extension elements, in order. */
  extensions: Uint8Array[];
}

export function encodeTbs(t: CertificateTemplate, signatureAlgorithmDer: Uint8Array): Buffer {
  return seq(
    explicit(0, uint(2)),
    uintFromBytes(t.serial),
    signatureAlgorithmDer,
    t.issuerDer,
    seq(time(t.notBefore), time(t.notAfter)),
    t.subjectDer,
    t.spkiDer,
    explicit(3, seq(...t.extensions)),
  );
}

/** Signs a template with `signer`; returns the certificate DER. */
export async function signCertificate(t: CertificateTemplate, signer: Signer): Promise<Buffer> {
  const tbs = encodeTbs(t, signer.algorithm.der);
  return assemble(tbs, signer, await signer.sign(tbs));
}

const assemble = (tbs: Buffer, signer: Signer, signature: Uint8Array): Buffer => seq(tbs, signer.algorithm.der, bitString(signature));

export const certificatePem = (der: Uint8Array): string => pem('CERTIFICATE', der);

/**
 * Issues for a CSR: verifies its proof of possession, then signs the template. One
 * job when the signer can do both (Signer.verifyAndSign) and the key is EC; else the
 * CSR is verified (with `ecVerifier` when given) and the template signed after.
 */
export async function signCertificateForCsr(
  t: CertificateTemplate,
  signer: Signer,
  csr: ParsedCsr,
  ecVerifier?: EcVerifier,
): Promise<Buffer> {
  const check = signer.verifyAndSign && ecSignatureCheck(csr);
  if (!check) {
    await verifyCsrSignature(csr, ecVerifier);
    return signCertificate(t, signer);
  }
  const tbs = encodeTbs(t, signer.algorithm.der);
  const signature = await signer.verifyAndSign!(check, tbs);
  if (signature === 'bad-key') throw unreadableCsrKey(new Error('public key is not a point on the curve'));
  if (signature === 'wrong-signature') throw csrSignatureRefused();
  return assemble(tbs, signer, signature);
}
