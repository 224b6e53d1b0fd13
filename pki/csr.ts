// PKCS#10 certificate requests: parse (keeping raw DER slices) and verify.
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { children, decodeOid, decodeOne, DerError, expectTag, TAG, unpem } from './der.js';
import { KilnError } from './errors.js';
import { decodeName, type NameAttribute } from './name.js';
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

const HASH_FOR_SIGNATURE: Record<string, string> = {
  [OID.ecdsaSha256]: 'sha256',
  [OID.ecdsaSha384]: 'sha384',
  [OID.ecdsaSha512]: 'sha512',
  [OID.sha256WithRsa]: 'sha256',
  [OID.sha384WithRsa]: 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};

/** Parses a PEM CSR. Throws KilnError('bad_csr') with a one-line reason. */
export function parseCsrPem(text: string): ParsedCsr {
  const der = unpem(text, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);
  if (!der || der.length === 0) throw new KilnError('bad_csr', 'csr is not a PEM certificate request');
  return parseCsr(der);
}

export function parseCsr(der: Buffer): ParsedCsr {
  try {
    return parseCsrDer(der);
  } catch (err) {
    if (err instanceof KilnError) throw err;
    throw new KilnError('bad_csr', 'csr does not parse as PKCS#10', { cause: err });
  }
}

function parseCsrDer(der: Buffer): ParsedCsr {
  const [info, sigAlg, sig] = children(expectTag(decodeOne(der), TAG.SEQUENCE, 'CertificationRequest'));
  const [version, subject, spki, attrs] = children(expectTag(info, TAG.SEQUENCE, 'CertificationRequestInfo'));
  expectTag(version, TAG.INTEGER, 'version');
  expectTag(subject, TAG.SEQUENCE, 'subject');
  expectTag(spki, TAG.SEQUENCE, 'subjectPKInfo');
  const sigOid = decodeOid(expectTag(children(expectTag(sigAlg, TAG.SEQUENCE, 'signatureAlgorithm'))[0], TAG.OID, 'algorithm').body);
  const sigBits = expectTag(sig, TAG.BIT_STRING, 'signature');
  if (sigBits.body[0] !== 0) throw new DerError('signature has unused bits');

  let key: ReturnType<typeof readSpki>;
  try {
    key = readSpki(spki.raw);
  } catch (err) {
    throw new KilnError('bad_csr', 'csr public key is not readable', { cause: err });
  }

  return {
    der,
    infoDer: Buffer.from(info.raw),
    subjectDer: Buffer.from(subject.raw),
    subject: decodeName(subject),
    spkiDer: Buffer.from(spki.raw),
    publicKey: key.key,
    keyInfo: key.info,
    ecPoint: key.ecPoint,
    signatureAlgorithm: sigOid,
    signature: Buffer.from(sigBits.body.subarray(1)),
    requestedExtensions: attrs ? readExtensionRequest(attrs.body) : new Map(),
  };
}

function readExtensionRequest(attrsBody: Uint8Array): Map<string, { critical: boolean; value: Buffer }> {
  const out = new Map<string, { critical: boolean; value: Buffer }>();
  for (const attr of children({ tag: TAG.SET, raw: attrsBody, body: attrsBody })) {
    const [type, values] = children(attr);
    if (decodeOid(type.body) !== OID.extensionRequest) continue;
    for (const ext of children(children(values)[0])) {
      const parts = children(ext);
      const critical = parts.length === 3 && parts[1].body[0] !== 0;
      out.set(decodeOid(parts[0].body), { critical, value: Buffer.from(parts[parts.length - 1].body) });
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
  const hash = HASH_FOR_SIGNATURE[csr.signatureAlgorithm];
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
  const hash = HASH_FOR_SIGNATURE[csr.signatureAlgorithm];
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
