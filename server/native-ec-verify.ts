// Loads the native ECDSA verifier (native/ec_verify.c, built by `npm run build`
// into dist/). Without it the server still verifies every CSR, through
// node:crypto, at about half the rate; the start-up log line says which.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { EcVerifier } from '../pki/csr.js';
import { packageRoot } from './paths.js';

type Addon = {
  verify(curve: string, point: Uint8Array, hash: string, data: Uint8Array, sig: Uint8Array, cb: (err: Error | null, ok?: boolean) => void): void;
};

export interface LoadedEcVerifier {
  verifier?: EcVerifier;
  /** "native" or "node:crypto", for the start-up log */
  backend: string;
}

export const NATIVE_EC_VERIFY = (): string => join(packageRoot(), 'dist/kiln_ec_verify.node');

export function loadNativeEcVerifier(path = NATIVE_EC_VERIFY()): LoadedEcVerifier {
  let addon: Addon;
  try {
    addon = createRequire(import.meta.url)(path) as Addon;
  } catch {
    return { backend: 'node:crypto' };
  }
  return {
    backend: 'native',
    verifier: (curve, point, hash, data, sig) =>
      new Promise((resolve, reject) => addon.verify(curve, point, hash, data, sig, (err, ok) => (err ? reject(err) : resolve(ok === true)))),
  };
}
