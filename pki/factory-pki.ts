// Creating a factory PKI from scratch, laid out as `fioctl keys ca create` does.
// Pure: returns file contents; writing them is the caller's job.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createCa } from './ca.js';
import { certificatePem, signCertificate } from './certificate.js';
import { createKeySigner, type Signer } from './signer.js';
import { gatewayTlsTemplate, localCaTemplate, rootCaTemplate, serverTlsTemplate } from './profiles.js';
import { randomSerial, type RandomSource } from './serial.js';
import { randomBytes } from 'node:crypto';

export const PKI_FILES = {
  rootCert: 'factory_ca.pem',
  rootKey: 'factory_ca.key',
  localCert: 'local-ca.pem',
  localKey: 'local-ca.key',
  tlsCert: 'tls-crt',
  tlsKey: 'tls.key',
  serverCert: 'server.pem',
  serverKey: 'server.key',
} as const;

export interface FactoryPkiOptions {
  factory: string;
  /** CN of the local CA; fioctl uses the owner (organisation) id. */
  owner: string;
  /** DNS SANs of the gateway TLS certificate: gateway host first, then the OSTree host. */
  dnsNames: string[];
  now: Date;
  random?: RandomSource;
  /** Signers whose keys live elsewhere (an HSM); by default P-256 keys are generated here. */
  rootSigner?: Signer;
  localSigner?: Signer;
  /** Kiln's own HTTPS certificate (server.pem/server.key), when names are given. */
  server?: { dnsNames: string[]; ips: Uint8Array[] };
}

export interface PkiFile {
  name: string;
  content: string;
  /** Private keys are 0600, certificates 0644. */
  mode: number;
}

export const ROOT_DAYS = 7300;
export const LOCAL_CA_DAYS = 3650;
export const TLS_DAYS = 3650;

export function generateP256(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}

export const sec1Pem = (key: KeyObject): string => key.export({ type: 'sec1', format: 'pem' }).toString();

export async function createFactoryPki(opts: FactoryPkiOptions): Promise<PkiFile[]> {
  const random = opts.random ?? randomBytes;
  const files: PkiFile[] = [];
  const keyed = (given: Signer | undefined, keyName: string): Signer => {
    if (given) return given;
    const key = generateP256();
    files.push({ name: keyName, content: sec1Pem(key), mode: 0o600 });
    return createKeySigner(key);
  };
  const base = { factory: opts.factory, notBefore: opts.now };

  const rootSigner = keyed(opts.rootSigner, PKI_FILES.rootKey);
  const rootDer = await signCertificate(
    rootCaTemplate({ ...base, serial: randomSerial(random), commonName: 'Factory-CA', spkiDer: rootSigner.spkiDer, days: ROOT_DAYS }),
    rootSigner,
  );
  const root = createCa(rootDer, rootSigner, 'root CA');
  files.push({ name: PKI_FILES.rootCert, content: certificatePem(rootDer), mode: 0o644 });

  const localSigner = keyed(opts.localSigner, PKI_FILES.localKey);
  const localDer = await signCertificate(
    localCaTemplate(
      { ...base, serial: randomSerial(random), commonName: opts.owner, spkiDer: localSigner.spkiDer, days: LOCAL_CA_DAYS },
      root,
    ),
    rootSigner,
  );
  files.push({ name: PKI_FILES.localCert, content: certificatePem(localDer), mode: 0o644 });

  const tlsKey = generateP256();
  files.push({ name: PKI_FILES.tlsKey, content: sec1Pem(tlsKey), mode: 0o600 });
  const tlsSpki = createKeySigner(tlsKey).spkiDer;
  const tlsDer = await signCertificate(
    gatewayTlsTemplate(
      { ...base, serial: randomSerial(random), commonName: opts.dnsNames[0], spkiDer: tlsSpki, days: TLS_DAYS, dnsNames: opts.dnsNames },
      root,
    ),
    rootSigner,
  );
  files.push({ name: PKI_FILES.tlsCert, content: certificatePem(tlsDer), mode: 0o644 });

  if (opts.server && (opts.server.dnsNames.length || opts.server.ips.length)) {
    const serverKey = generateP256();
    files.push({ name: PKI_FILES.serverKey, content: sec1Pem(serverKey), mode: 0o600 });
    const serverDer = await signCertificate(
      serverTlsTemplate(
        {
          ...base,
          serial: randomSerial(random),
          commonName: opts.server.dnsNames[0] ?? 'kiln',
          spkiDer: createKeySigner(serverKey).spkiDer,
          days: TLS_DAYS,
          dnsNames: opts.server.dnsNames,
          ips: opts.server.ips,
        },
        root,
      ),
      rootSigner,
    );
    files.push({ name: PKI_FILES.serverCert, content: certificatePem(serverDer), mode: 0o644 });
  }
  return files;
}
