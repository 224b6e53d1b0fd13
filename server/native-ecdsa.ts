// Loads the native ECDSA addon (native/ecdsa.c, built by `npm run build` into
// dist/). It verifies CSR signatures from the bare point and, for an EC CA key in
// a PEM file, signs, and verifies a CSR and signs its certificate in one
// thread-pool job. Without it the server still verifies every CSR and signs
// through node:crypto, at about half the rate; the start-up log line says which.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { EcVerifier } from '../pki/csr.js';
import { createPemSigner, type Signer } from '../pki/signer.js';
import { packageRoot } from './paths.js';

type NativeKey = object;
type Callback<T> = (err: Error | null, value?: T) => void;
type Addon = {
  verify(curve: string, point: Uint8Array, hash: string, data: Uint8Array, sig: Uint8Array, cb: Callback<boolean>): void;
  signingKey(pem: Uint8Array): NativeKey;
  sign(key: NativeKey, hash: string, data: Uint8Array, cb: Callback<Buffer>): void;
  verifySign(
    curve: string,
    point: Uint8Array,
    hash: string,
    data: Uint8Array,
    sig: Uint8Array,
    key: NativeKey,
    signHash: string,
    tbs: Uint8Array,
    cb: Callback<Buffer | 0 | -1>,
  ): void;
  backgroundThread(): boolean;
};

export interface NativeEcdsa {
  /** "native" or "node:crypto", for the start-up log */
  backend: string;
  verifier?: EcVerifier;
  /** A signer over a PEM CA key: native signatures and verifyAndSign for EC keys, node:crypto's otherwise. */
  pemSigner: (pem: string | Buffer, source?: string) => Signer;
}

export const NATIVE_ECDSA = (): string => join(packageRoot(), 'dist/kiln_ecdsa.node');

const settle =
  <T>(resolve: (v: T) => void, reject: (e: Error) => void): Callback<T> =>
  (err, value) =>
    err ? reject(err) : resolve(value as T);

/** native/ecdsa.c's MAX_DATA */
const NATIVE_MAX_DATA = 64 * 1024;

function nativeSigner(addon: Addon, base: Signer, pem: string | Buffer): Signer {
  let key: NativeKey;
  try {
    key = addon.signingKey(Buffer.from(pem));
  } catch {
    return base; // RSA and other key types: node:crypto
  }
  const { hash } = base.algorithm;
  return {
    ...base,
    // the addon takes at most 64 KiB (native/ecdsa.c MAX_DATA: a TBSCertificate is ~500 bytes);
    // a larger CRL (a few thousand entries) is signed through node:crypto with the same key
    sign: (data) =>
      data.length > NATIVE_MAX_DATA
        ? base.sign(data)
        : new Promise((resolve, reject) => addon.sign(key, hash, data, settle(resolve, reject))),
    verifyAndSign: (c, tbs) =>
      new Promise((resolve, reject) =>
        addon.verifySign(
          c.curve,
          c.point,
          c.hash,
          c.data,
          c.signature,
          key,
          hash,
          tbs,
          settle<Buffer | 0 | -1>((r) => resolve(r === 0 ? 'wrong-signature' : r === -1 ? 'bad-key' : r), reject),
        ),
      ),
  };
}

function loadAddon(path: string): Addon | undefined {
  try {
    return createRequire(import.meta.url)(path) as Addon;
  } catch {
    return undefined;
  }
}

/**
 * Makes the calling thread SCHED_BATCH (see native/ecdsa.c): woken by the event
 * loop, it no longer preempts it. For the SQLite writer and checkpoint threads;
 * false when the addon is not built or the policy was refused.
 */
export const backgroundThread = (path = NATIVE_ECDSA()): boolean => loadAddon(path)?.backgroundThread() ?? false;

export function loadNativeEcdsa(path = NATIVE_ECDSA()): NativeEcdsa {
  const addon = loadAddon(path);
  if (!addon) return { backend: 'node:crypto', pemSigner: createPemSigner };
  return {
    backend: 'native',
    verifier: (curve, point, hash, data, sig) =>
      new Promise((resolve, reject) =>
        addon.verify(
          curve,
          point,
          hash,
          data,
          sig,
          settle<boolean>((ok) => resolve(ok === true), reject),
        ),
      ),
    pemSigner: (pem, source) => {
      const base = createPemSigner(pem, source);
      return base.algorithm.name.startsWith('ecdsa') ? nativeSigner(addon, base, pem) : base;
    },
  };
}
