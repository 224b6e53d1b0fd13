// SubjectPublicKeyInfo → a description of the key, its EC point, and a Node
// KeyObject. EC keys on the curves below are imported only when asked (and then
// through JWK from our own parse): on Node 20 (OpenSSL 3.0) importing an SPKI DER
// costs ~265 µs, a JWK ~130 µs, and a registration's key is usually verified
// from its point alone (an injected EcVerifier, see csr.ts).
import { createPublicKey, type KeyObject } from 'node:crypto';
import { decodeOid, decodeOne, DerError, expectTag, fields, integerBody, TAG } from './der.js';
import { OID } from './oids.js';

export interface PublicKeyInfo {
  type: 'ec' | 'rsa' | 'other';
  /** EC curve, Node's name (prime256v1, secp384r1, …) */
  curve?: string;
  /** RSA modulus size */
  bits?: number;
}

const CURVES: Record<string, { name: string; jwk: string; size: number }> = {
  [OID.p256]: { name: 'prime256v1', jwk: 'P-256', size: 32 },
  [OID.p384]: { name: 'secp384r1', jwk: 'P-384', size: 48 },
  '1.3.132.0.35': { name: 'secp521r1', jwk: 'P-521', size: 66 },
};

const CURVE_NAMES: Record<string, string> = { '1.3.132.0.10': 'secp256k1' };

const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

function unsignedBytes(intBody: Uint8Array): Uint8Array {
  let i = 0;
  while (i < intBody.length - 1 && intBody[i] === 0) i++;
  return intBody.subarray(i);
}

export interface ReadKey {
  info: PublicKeyInfo;
  /** EC on a curve of CURVES: the uncompressed point (04 || X || Y), not yet checked to be on the curve. */
  ecPoint?: Buffer;
  /** The key as a KeyObject; throws when OpenSSL refuses it. */
  key: () => KeyObject;
}

export function readSpki(spkiDer: Uint8Array): ReadKey {
  const [alg, bits] = fields(expectTag(decodeOne(spkiDer), TAG.SEQUENCE, 'SubjectPublicKeyInfo'), 'SubjectPublicKeyInfo', 2);
  const [algOid, params] = fields(expectTag(alg, TAG.SEQUENCE, 'AlgorithmIdentifier'), 'AlgorithmIdentifier', 1, 2);
  const bitString = expectTag(bits, TAG.BIT_STRING, 'subjectPublicKey').body;
  if (bitString.length < 2 || bitString[0] !== 0) throw new DerError('subjectPublicKey is empty or has unused bits');
  const keyBits = bitString.subarray(1);
  const algorithm = decodeOid(expectTag(algOid, TAG.OID, 'algorithm').body);
  const fallback = (): KeyObject => createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' });

  if (algorithm === OID.ecPublicKey && params?.tag === TAG.OID) {
    const curveOid = decodeOid(params.body);
    const curve = CURVES[curveOid];
    if (curve && keyBits.length === 1 + 2 * curve.size && keyBits[0] === 0x04) {
      const x = keyBits.subarray(1, 1 + curve.size);
      const y = keyBits.subarray(1 + curve.size);
      let key: KeyObject | undefined;
      return {
        key: () => (key ??= createPublicKey({ key: { kty: 'EC', crv: curve.jwk, x: b64u(x), y: b64u(y) }, format: 'jwk' })),
        ecPoint: Buffer.from(keyBits),
        info: { type: 'ec', curve: curve.name },
      };
    }
    const key = fallback();
    return {
      key: () => key,
      info: { type: 'ec', curve: curve?.name ?? CURVE_NAMES[curveOid] ?? key.asymmetricKeyDetails?.namedCurve ?? curveOid },
    };
  }
  if (algorithm === OID.rsaEncryption) {
    if (params?.tag !== TAG.NULL || params.body.length !== 0) throw new DerError('rsaEncryption parameters must be NULL');
    const [n, e] = fields(expectTag(decodeOne(keyBits), TAG.SEQUENCE, 'RSAPublicKey'), 'RSAPublicKey', 2);
    const nBody = integerBody(n, 'modulus');
    const eBody = integerBody(e, 'publicExponent');
    if (nBody[0] & 0x80 || eBody[0] & 0x80) throw new DerError('RSA modulus and exponent must be positive');
    const modulus = unsignedBytes(nBody);
    const exponent = unsignedBytes(eBody);
    const bitLength = (modulus.length - 1) * 8 + (32 - Math.clz32(modulus[0]));
    const key = createPublicKey({ key: { kty: 'RSA', n: b64u(modulus), e: b64u(exponent) }, format: 'jwk' });
    return { key: () => key, info: { type: 'rsa', bits: bitLength } };
  }
  const key = fallback();
  return { key: () => key, info: { type: 'other' } };
}
