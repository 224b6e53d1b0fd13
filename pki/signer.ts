// The one signing interface every CA key backend implements (file, PKCS#11).
import { createPrivateKey, createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import type { EcSignatureCheck } from './csr.js';
import { nullValue, oid, seq } from './der.js';
import { KilnError } from './errors.js';
import { OID } from './oids.js';

export interface SignatureAlgorithm {
  /** e.g. ecdsa-with-SHA256 */
  name: string;
  oid: string;
  hash: 'sha256' | 'sha384' | 'sha512';
  /** The AlgorithmIdentifier, DER. */
  der: Buffer;
}

export interface Signer {
  readonly algorithm: SignatureAlgorithm;
  /** The signer's public key as SubjectPublicKeyInfo DER. */
  readonly spkiDer: Buffer;
  /** Signs `data` (hashing it with algorithm.hash); returns the X.509 signature value. */
  sign(data: Uint8Array): Promise<Buffer>;
  /**
   * Optional: checks a CSR's EC signature and signs `data` only if it verifies, in one
   * job (one thread hand-off per registration instead of two). Resolves the signature,
   * 'wrong-signature', or 'bad-key' when the CSR's point is not on its curve.
   */
  verifyAndSign?(check: EcSignatureCheck, data: Uint8Array): Promise<Buffer | 'wrong-signature' | 'bad-key'>;
  /** Short description of the backend for health checks and logs; never a secret. */
  describe(): { backend: string; state: string };
  close(): Promise<void>;
}

const alg = (name: string, id: string, hash: SignatureAlgorithm['hash'], params: boolean): SignatureAlgorithm => ({
  name,
  oid: id,
  hash,
  der: params ? seq(oid(id), nullValue()) : seq(oid(id)),
});

export const SIGNATURE_ALGORITHMS = {
  ecdsaSha256: alg('ecdsa-with-SHA256', OID.ecdsaSha256, 'sha256', false),
  ecdsaSha384: alg('ecdsa-with-SHA384', OID.ecdsaSha384, 'sha384', false),
  ecdsaSha512: alg('ecdsa-with-SHA512', OID.ecdsaSha512, 'sha512', false),
  sha256WithRsa: alg('sha256WithRSAEncryption', OID.sha256WithRsa, 'sha256', true),
} as const;

/** The signature algorithm Kiln uses for a CA public key. */
export function algorithmForKey(key: KeyObject): SignatureAlgorithm {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1') return SIGNATURE_ALGORITHMS.ecdsaSha256;
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'secp384r1') return SIGNATURE_ALGORITHMS.ecdsaSha384;
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'secp521r1') return SIGNATURE_ALGORITHMS.ecdsaSha512;
  if (key.asymmetricKeyType === 'ec') return SIGNATURE_ALGORITHMS.ecdsaSha256;
  if (key.asymmetricKeyType === 'rsa') return SIGNATURE_ALGORITHMS.sha256WithRsa;
  throw new KilnError('config', `unsupported key type ${key.asymmetricKeyType ?? 'unknown'} ${details.namedCurve ?? ''}`.trim());
}

/** A signer over a private key held in memory (from a PEM file). */
export function createKeySigner(privateKey: KeyObject, source = 'file'): Signer {
  const algorithm = algorithmForKey(privateKey);
  const spkiDer = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  return {
    algorithm,
    spkiDer,
    // the callback form runs in libuv's thread pool: signatures use every core
    sign: (data) =>
      new Promise((resolve, reject) =>
        cryptoSign(algorithm.hash, data, { key: privateKey, dsaEncoding: 'der' }, (err, sig) => (err ? reject(err) : resolve(sig))),
      ),
    describe: () => ({ backend: source, state: 'ready' }),
    async close() {},
  };
}

export function createPemSigner(keyPem: string | Buffer, source = 'file'): Signer {
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new KilnError('config', 'CA key is not a readable unencrypted PEM private key', { cause: err });
  }
  return createKeySigner(key, source);
}
