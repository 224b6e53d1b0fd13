// PKCS#10 certificate requests: parse (keeping raw DER slices) and verify.
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { children, decodeOid, decodeOne, DerError, expectTag, fields, integerBody, TAG, unpemStrict, type Tlv } from './der.js';
import { KilnError } from './errors.js';
import { decodeSubject, type NameAttribute } from './name.js';
import { OID } from './oids.js';
import { readSpki, type PublicKeyInfo } from './spki.js';

export type { PublicKeyInfo } from './spki.js';

export interface ParsedCsr {
  der: Buffer;
  /** certificationRequestInfo, the signed bytes */
  infoDer: Buffer;
  subjectDer: Buffer;
  subject: NameAttribute[];
  spkiDer: Buffer;
  /** The key as a KeyObject, imported on first call (costly on OpenSSL 3.0). */
  publicKey: () => KeyObject;
  keyInfo: PublicKeyInfo;
  /** EC keys on a known curve: the uncompressed point, for an EcVerifier. */
  ecPoint?: Buffer;
  signatureAlgorithm: string;
  signature: Buffer;
  /** Extensions requested through the PKCS#9 extensionRequest attribute. */
  requestedExtensions: Map<string, { critical: boolean; value: Buffer }>;
}

/** The signature algorithms Kiln accepts: SHA-256 or stronger, matched to the key type. */
const SIGNATURE_ALGORITHMS: Record<string, { hash: string; key: 'ec' | 'rsa' }> = {
  [OID.ecdsaSha256]: { hash: 'sha256', key: 'ec' },
  [OID.ecdsaSha384]: { hash: 'sha384', key: 'ec' },
  [OID.ecdsaSha512]: { hash: 'sha512', key: 'ec' },
  [OID.sha256WithRsa]: { hash: 'sha256', key: 'rsa' },
  [OID.sha384WithRsa]: { hash: 'sha384', key: 'rsa' },
  '1.2.840.113549.1.1.13': { hash: 'sha512', key: 'rsa' },
};

/** Bytes of one coordinate (and of the group order) per curve, to bound an ECDSA signature. */
const CURVE_BYTES: Record<string, number> = { prime256v1: 32, secp384r1: 48, secp521r1: 66 };

const CSR_LABEL = 'CERTIFICATE REQUEST';

const badCsr = (reason: string, cause?: unknown): KilnError => new KilnError('bad_csr', `csr ${reason}`, { cause });

/** Parses a PEM CSR: exactly one CERTIFICATE REQUEST block. Throws KilnError('bad_csr') with a one-line reason. */
export function parseCsrPem(text: string): ParsedCsr {
  let der: Buffer;
  try {
    der = unpemStrict(text, CSR_LABEL);
  } catch (err) {
    throw badCsr(`is not one PEM certificate request: ${(err as Error).message}`, err);
  }
  return parseCsr(der);
}

export function parseCsr(der: Buffer): ParsedCsr {
  try {
    return parseCsrDer(der);
  } catch (err) {
    if (err instanceof KilnError) throw err;
    throw badCsr(`is not DER PKCS#10: ${(err as Error).message}`, err);
  }
}

function parseCsrDer(der: Buffer): ParsedCsr {
  const [info, sigAlg, sig] = fields(expectTag(decodeOne(der), TAG.SEQUENCE, 'CertificationRequest'), 'CertificationRequest', 3);
  const [version, subject, spki, attrs] = fields(expectTag(info, TAG.SEQUENCE, 'CertificationRequestInfo'), 'CertificationRequestInfo', 4);
  const v = integerBody(version, 'version');
  if (v.length !== 1 || v[0] !== 0) throw badCsr('version must be 0 (v1)');
  expectTag(subject, TAG.SEQUENCE, 'subject');
  expectTag(spki, TAG.SEQUENCE, 'subjectPKInfo');
  expectTag(attrs, 0xa0, 'attributes [0]');

  const [algOid, algParams] = fields(expectTag(sigAlg, TAG.SEQUENCE, 'signatureAlgorithm'), 'signatureAlgorithm', 1, 2);
  const sigOid = decodeOid(expectTag(algOid, TAG.OID, 'algorithm').body);
  const sigBits = expectTag(sig, TAG.BIT_STRING, 'signature').body;
  if (sigBits.length === 0 || sigBits[0] !== 0) throw new DerError('signature has unused bits');
  const signature = Buffer.from(sigBits.subarray(1));

  let key: ReturnType<typeof readSpki>;
  try {
    key = readSpki(spki.raw);
  } catch (err) {
    throw badCsr('public key is not readable', err);
  }
  const alg = SIGNATURE_ALGORITHMS[sigOid];
  if (!alg) throw badCsr(`signature algorithm ${sigOid} is not supported (ECDSA or RSA with SHA-256 or stronger)`);
  if (alg.key !== key.info.type) throw badCsr(`signature algorithm ${sigOid} does not match its ${key.info.type.toUpperCase()} key`);
  // ECDSA takes no parameters (RFC 5758); PKCS#1 v1.5 takes NULL (RFC 4055), absent tolerated
  if (alg.key === 'ec' ? algParams !== undefined : algParams !== undefined && (algParams.tag !== TAG.NULL || algParams.body.length !== 0))
    throw badCsr('signature algorithm has parameters it must not have');
  checkSignatureShape(signature, key);

  return {
    der,
    infoDer: Buffer.from(info.raw),
    subjectDer: Buffer.from(subject.raw),
    subject: decodeSubject(subject),
    spkiDer: Buffer.from(spki.raw),
    publicKey: key.key,
    keyInfo: key.info,
    ecPoint: key.ecPoint,
    signatureAlgorithm: sigOid,
    signature,
    requestedExtensions: readExtensionRequest(attrs),
  };
}

/** An empty, oversized or malformed signature is refused before any verifier sees it. */
function checkSignatureShape(signature: Buffer, key: ReturnType<typeof readSpki>): void {
  if (signature.length === 0) throw badCsr('signature is empty');
  if (key.info.type === 'ec') {
    const n = CURVE_BYTES[key.info.curve ?? ''] ?? 66;
    // SEQUENCE { INTEGER r, INTEGER s }, each positive and at most the order's size (+1 for a sign byte)
    const content = 2 * (2 + n + 1);
    const max = content + (content < 0x80 ? 2 : 3);
    if (signature.length > max) throw badCsr(`signature is ${signature.length} bytes, longer than any ${key.info.curve} ECDSA signature`);
    try {
      for (const part of fields(expectTag(decodeOne(signature), TAG.SEQUENCE, 'ECDSA-Sig-Value'), 'ECDSA-Sig-Value', 2)) {
        const b = integerBody(part, 'ECDSA signature value');
        if (b[0] & 0x80 || (b.length === 1 && b[0] === 0) || b.length > n + 1) throw new DerError('ECDSA signature value out of range');
      }
    } catch (err) {
      throw badCsr('signature is not a DER ECDSA signature', err);
    }
  } else if (key.info.type === 'rsa') {
    const bytes = Math.ceil((key.info.bits ?? 0) / 8);
    if (signature.length !== bytes) throw badCsr(`signature is ${signature.length} bytes; an RSA-${key.info.bits} signature is ${bytes}`);
  }
}

/** The PKCS#9 extensionRequest attribute, read strictly; other attributes are skipped but must be well-formed. */
function readExtensionRequest(attrs: Tlv): Map<string, { critical: boolean; value: Buffer }> {
  const out = new Map<string, { critical: boolean; value: Buffer }>();
  for (const attr of children(attrs)) {
    const [type, values] = fields(expectTag(attr, TAG.SEQUENCE, 'Attribute'), 'Attribute', 2);
    const attrOid = decodeOid(expectTag(type, TAG.OID, 'attribute type').body);
    const vals = children(expectTag(values, TAG.SET, 'attribute values'));
    if (attrOid !== OID.extensionRequest) continue;
    if (vals.length !== 1) throw badCsr('extensionRequest must hold exactly one value');
    for (const ext of children(expectTag(vals[0], TAG.SEQUENCE, 'Extensions'))) {
      const parts = fields(expectTag(ext, TAG.SEQUENCE, 'Extension'), 'Extension', 2, 3);
      const extOid = decodeOid(expectTag(parts[0], TAG.OID, 'extnID').body);
      if (parts.length === 3) {
        const c = expectTag(parts[1], TAG.BOOLEAN, 'critical').body;
        // DER: TRUE is 0xff, and a FALSE default is omitted
        if (c.length !== 1 || c[0] !== 0xff) throw badCsr(`extension ${extOid}: critical must be absent or TRUE (0xff)`);
      }
      if (out.has(extOid)) throw badCsr(`extension ${extOid} is requested twice`);
      const value = expectTag(parts[parts.length - 1], TAG.OCTET_STRING, 'extnValue').body;
      out.set(extOid, { critical: parts.length === 3, value: Buffer.from(value) });
    }
  }
  return out;
}

/**
 * Verifies an ECDSA signature from the bare public point (the server injects
 * OpenSSL's EC primitives through a native addon, server/native-ecdsa.ts).
 * Resolves false for a wrong signature; rejects when the point is not on the curve.
 */
export type EcVerifier = (curve: string, point: Uint8Array, hash: string, data: Uint8Array, signatureDer: Uint8Array) => Promise<boolean>;

/** An EC CSR's proof of possession, in the pieces a native verifier takes. */
export interface EcSignatureCheck {
  curve: string;
  point: Uint8Array;
  hash: string;
  data: Uint8Array;
  signature: Uint8Array;
}

const ECDSA = new Set<string>([OID.ecdsaSha256, OID.ecdsaSha384, OID.ecdsaSha512]);

/** The CSR's signature as an EcSignatureCheck: EC keys on a known curve signed with ECDSA; otherwise undefined. */
export function ecSignatureCheck(csr: ParsedCsr): EcSignatureCheck | undefined {
  const hash = SIGNATURE_ALGORITHMS[csr.signatureAlgorithm]?.hash;
  if (!hash || !csr.ecPoint || !csr.keyInfo.curve || !ECDSA.has(csr.signatureAlgorithm)) return undefined;
  return { curve: csr.keyInfo.curve, point: csr.ecPoint, hash, data: csr.infoDer, signature: csr.signature };
}

/** The refusals of a CSR's signature check, the same from every verifier. */
export const unreadableCsrKey = (cause: unknown): KilnError => new KilnError('bad_csr', 'csr public key is not readable', { cause });
export const csrSignatureRefused = (): KilnError => new KilnError('bad_csr', 'csr signature does not verify');

/** node:crypto's verification, off the main thread: every key type. */
function verifyWithNode(csr: ParsedCsr, hash: string): Promise<boolean> {
  let key: KeyObject;
  try {
    key = csr.publicKey();
  } catch (err) {
    return Promise.reject(err);
  }
  return new Promise<boolean>((resolve) => {
    try {
      cryptoVerify(hash, csr.infoDer, { key, dsaEncoding: 'der' }, csr.signature, (err, valid) => resolve(!err && valid));
    } catch {
      resolve(false);
    }
  });
}

/** Checks the CSR's self-signature (proof of possession), off the main thread. */
export async function verifyCsrSignature(csr: ParsedCsr, ecVerifier?: EcVerifier): Promise<void> {
  const hash = SIGNATURE_ALGORITHMS[csr.signatureAlgorithm]?.hash;
  if (!hash) throw new KilnError('bad_csr', `csr signature algorithm ${csr.signatureAlgorithm} is not supported`);
  const ec = ecVerifier && ecSignatureCheck(csr);
  let ok: boolean;
  try {
    ok = ec ? await ecVerifier(ec.curve, ec.point, ec.hash, ec.data, ec.signature) : await verifyWithNode(csr, hash);
  } catch (err) {
    throw unreadableCsrKey(err);
  }
  if (!ok) throw csrSignatureRefused();
}
