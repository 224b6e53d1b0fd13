// Certificate profiles: what each kind of certificate in a factory PKI contains.
import type { Ca } from './ca.js';
import type { CertificateTemplate } from './certificate.js';
import type { ParsedCsr } from './csr.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  crlDistributionPoint,
  extKeyUsage,
  keyIdentifier,
  keyUsage,
  subjectAltName,
  subjectKeyIdentifier,
} from './extensions.js';
import { encodeName } from './name.js';
import { OID } from './oids.js';

const DAY_MS = 86_400_000;

export const addDays = (d: Date, days: number): Date => new Date(d.getTime() + days * DAY_MS);

/** Seconds precision: X.509 times carry no fractions. */
export const wholeSeconds = (d: Date): Date => new Date(Math.floor(d.getTime() / 1000) * 1000);

export interface DeviceIssue {
  ca: Ca;
  csr: ParsedCsr;
  serial: Uint8Array;
  notBefore: Date;
  validityDays: number;
  /** Where the CA's CRL is published: a cRLDistributionPoints extension when given. */
  crlUrl?: string;
}

/** The extensions every device certificate of one CA shares, encoded once per CA (and CRL URL). */
const deviceExtensions = new WeakMap<Ca, { url?: string; exts: Buffer[] }>();

function sharedDeviceExtensions(ca: Ca, crlUrl?: string): Buffer[] {
  let shared = deviceExtensions.get(ca);
  if (!shared || shared.url !== crlUrl) {
    const exts = [keyUsage(['digitalSignature']), extKeyUsage([OID.clientAuth]), authorityKeyIdentifier(ca.keyId)];
    if (crlUrl) exts.push(crlDistributionPoint(crlUrl));
    shared = { url: crlUrl, exts };
    deviceExtensions.set(ca, shared);
  }
  return shared.exts;
}

/**
 * A device certificate issued now would outlive the CA that signs it: it is cut to the
 * CA's notAfter. Says so (and when) for pki show, /healthz and the start-up log.
 */
export function caExpiryWarning(caNotAfter: Date, validityDays: number, now: Date): string | undefined {
  if (caNotAfter.getTime() >= addDays(now, validityDays).getTime()) return undefined;
  if (caNotAfter <= now) return `the local CA expired at ${caNotAfter.toISOString()}: no device certificate it signs is valid`;
  const days = Math.floor((caNotAfter.getTime() - now.getTime()) / DAY_MS);
  return `the local CA expires at ${caNotAfter.toISOString()} (in ${days} days), within the device validity of ${validityDays} days: new device certificates end with it; renew the local CA before then`;
}

/** The device certificate template (contract §4 plus a subjectKeyIdentifier). */
export function deviceTemplate(p: DeviceIssue): CertificateTemplate {
  const notBefore = wholeSeconds(p.notBefore);
  return {
    serial: p.serial,
    issuerDer: p.ca.cert.subjectDer,
    subjectDer: p.csr.subjectDer,
    spkiDer: p.csr.spkiDer,
    notBefore,
    // never past the CA's own notAfter: a chain is only as valid as its shortest link
    notAfter: new Date(Math.min(addDays(notBefore, p.validityDays).getTime(), p.ca.cert.notAfter.getTime())),
    extensions: [...sharedDeviceExtensions(p.ca, p.crlUrl), subjectKeyIdentifier(keyIdentifier(p.csr.spkiDer))],
  };
}

export interface CaProfileInput {
  serial: Uint8Array;
  /** CN of the new certificate */
  commonName: string;
  factory: string;
  spkiDer: Uint8Array;
  notBefore: Date;
  days: number;
}

const subjectOf = (cn: string, factory: string): Buffer =>
  encodeName([
    { oid: OID.commonName, value: cn },
    { oid: OID.organizationalUnit, value: factory },
  ]);

/** Self-signed factory root: CA:TRUE, keyCertSign + cRLSign. */
export function rootCaTemplate(p: CaProfileInput): CertificateTemplate {
  const subject = subjectOf(p.commonName, p.factory);
  const notBefore = wholeSeconds(p.notBefore);
  return {
    serial: p.serial,
    issuerDer: subject,
    subjectDer: subject,
    spkiDer: p.spkiDer,
    notBefore,
    notAfter: addDays(notBefore, p.days),
    extensions: [basicConstraints(true), keyUsage(['keyCertSign', 'cRLSign']), subjectKeyIdentifier(keyIdentifier(p.spkiDer))],
  };
}

/** The local (device-signing) CA under the root: CA:TRUE pathlen 0, keyCertSign + cRLSign (it signs the devices' CRL). */
export function localCaTemplate(p: CaProfileInput, root: Ca): CertificateTemplate {
  const notBefore = wholeSeconds(p.notBefore);
  return {
    serial: p.serial,
    issuerDer: root.cert.subjectDer,
    subjectDer: subjectOf(p.commonName, p.factory),
    spkiDer: p.spkiDer,
    notBefore,
    notAfter: addDays(notBefore, p.days),
    extensions: [
      basicConstraints(true, 0),
      keyUsage(['keyCertSign', 'cRLSign']),
      subjectKeyIdentifier(keyIdentifier(p.spkiDer)),
      authorityKeyIdentifier(root.keyId),
    ],
  };
}

/** The device gateway's TLS server certificate; its DNS SANs name gateway and OSTree hosts. */
/** Kiln's own HTTPS server certificate (`pki init --server-dns/--server-ip`): serverAuth, DNS and IP SANs, under the root. */
export function serverTlsTemplate(p: CaProfileInput & { dnsNames: string[]; ips: Uint8Array[] }, root: Ca): CertificateTemplate {
  const notBefore = wholeSeconds(p.notBefore);
  return {
    serial: p.serial,
    issuerDer: root.cert.subjectDer,
    subjectDer: subjectOf(p.commonName, p.factory),
    spkiDer: p.spkiDer,
    notBefore,
    notAfter: addDays(notBefore, p.days),
    extensions: [
      basicConstraints(false),
      keyUsage(['digitalSignature']),
      extKeyUsage([OID.serverAuth], false),
      subjectAltName(p.dnsNames, p.ips),
      subjectKeyIdentifier(keyIdentifier(p.spkiDer)),
      authorityKeyIdentifier(root.keyId),
    ],
  };
}

/** The device gateway's TLS certificate (fioctl's tls-crt): the server profile with DNS SANs only. */
export function gatewayTlsTemplate(p: CaProfileInput & { dnsNames: string[] }, root: Ca): CertificateTemplate {
  return serverTlsTemplate({ ...p, ips: [] }, root);
}
