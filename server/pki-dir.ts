// The factory PKI directory on disk, in the layout `fioctl keys ca create` writes.
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, type Ca } from '../pki/ca.js';
import { certificatePem, parseCertificate, pemCertificates, type ParsedCertificate } from '../pki/certificate.js';
import { fileError, KilnError, unreadable } from '../pki/errors.js';
import { PKI_FILES, type PkiFile } from '../pki/factory-pki.js';
import { nameValue } from '../pki/name.js';
import { OID } from '../pki/oids.js';
import { DEFAULT_KEY_POLICY, type DevicePolicy } from '../pki/policy.js';
import type { Signer } from '../pki/signer.js';
import { makeDirs } from './make-dirs.js';

export interface FactoryPki {
  dir: string;
  root: ParsedCertificate;
  rootPem: string;
  local: Ca;
  /** The gateway TLS certificate, when the directory has one. */
  tls?: ParsedCertificate;
}

function readCert(dir: string, name: string, required: true): ParsedCertificate;
function readCert(dir: string, name: string, required: false): ParsedCertificate | undefined;
function readCert(dir: string, name: string, required: boolean): ParsedCertificate | undefined {
  const path = join(dir, name);
  if (!existsSync(path)) {
    if (required) throw new KilnError('config', `PKI directory ${dir} has no ${name} (create one with: kilnctl pki init)`);
    return undefined;
  }
  const der = pemCertificates(readFile(path))[0];
  if (!der) throw new KilnError('config', `${path} holds no PEM certificate`);
  try {
    return parseCertificate(der);
  } catch (err) {
    throw new KilnError('config', `${path} is not a readable X.509 certificate: ${(err as Error).message}`, { cause: err });
  }
}

function readFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw unreadable('', path, err);
  }
}

export interface FactoryCerts {
  root: ParsedCertificate;
  local: ParsedCertificate;
  tls?: ParsedCertificate;
  /** The OU of the local CA: the factory name. */
  factory: string;
}

/** Reads and cross-checks the certificates of a PKI directory (no keys). */
export function readFactoryCerts(dir: string): FactoryCerts {
  if (!existsSync(dir)) throw new KilnError('config', `PKI directory ${dir} does not exist (create one with: kilnctl pki init)`);
  const root = readCert(dir, PKI_FILES.rootCert, true);
  const local = readCert(dir, PKI_FILES.localCert, true);
  const tls = readCert(dir, PKI_FILES.tlsCert, false);
  if (!new X509Certificate(local.der).verify(new X509Certificate(root.der).publicKey)) {
    throw new KilnError('config', `${PKI_FILES.localCert} is not signed by ${PKI_FILES.rootCert}`);
  }
  const factory = nameValue(local.subject, OID.organizationalUnit);
  if (!factory) throw new KilnError('config', `${PKI_FILES.localCert} subject has no OU (the factory name)`);
  return { root, local, tls, factory };
}

/** The PKI with its signing CA; the CA key comes from `signer` (file or HSM). */
export function loadFactoryPki(dir: string, signer: Signer): FactoryPki {
  const certs = readFactoryCerts(dir);
  const local = createCa(certs.local.der, signer, 'local CA');
  return { dir, root: certs.root, rootPem: certificatePem(certs.root.der), local, tls: certs.tls };
}

/** Writes a freshly created PKI; refuses to overwrite any existing PKI file. */
export function assertNoPki(dir: string): void {
  const taken = Object.values(PKI_FILES).filter((f) => existsSync(join(dir, f)));
  if (taken.length) throw new KilnError('conflict', `${dir} already holds a PKI (${taken.join(', ')}); refusing to overwrite`);
}

export function writeFactoryPki(dir: string, files: PkiFile[]): void {
  assertNoPki(dir);
  makeDirs(dir, 0o700);
  const written: string[] = [];
  for (const f of files) {
    const path = join(dir, f.name);
    try {
      writeFileSync(path, f.content, { mode: f.mode, flag: 'wx' });
    } catch (err) {
      for (const p of written) rmSync(p, { force: true });
      throw fileError('create', path, err);
    }
    written.push(path);
  }
}

/** What the sign pipeline takes from a factory PKI: the local CA, the root to hand out, the device policy. */
export const signingFrom = (pki: FactoryPki): { ca: Ca; rootPem: string; policy: DevicePolicy } => ({
  ca: pki.local,
  rootPem: pki.rootPem,
  policy: { factory: pki.local.factory, ...DEFAULT_KEY_POLICY },
});
