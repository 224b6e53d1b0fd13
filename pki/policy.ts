// The device-certificate policy: what a CSR must look like to be signed.
import { verifyCsrSignature, type EcVerifier, type ParsedCsr } from './csr.js';
import { KilnError } from './errors.js';
import { ATTRIBUTE_NAMES, OID } from './oids.js';

export interface DevicePolicy {
  /** The factory name: the OU every device CSR must carry. */
  factory: string;
  /** Accepted EC curves (Node names). */
  ecCurves: readonly string[];
  /** Minimum RSA modulus; 0 refuses RSA keys. */
  minRsaBits: number;
}

export const DEFAULT_KEY_POLICY = { ecCurves: ['prime256v1', 'secp384r1'], minRsaBits: 2048 } as const;

export interface DeviceIdentity {
  /** The CN, lower-cased. */
  uuid: string;
  production: boolean;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isCanonicalUuid = (s: string): boolean => UUID_RE.test(s);

/** Validates a parsed CSR against the policy, its signature included; returns the device identity it names. */
export async function checkDeviceCsr(csr: ParsedCsr, policy: DevicePolicy, ecVerifier?: EcVerifier): Promise<DeviceIdentity> {
  await verifyCsrSignature(csr, ecVerifier);
  return checkDevicePolicy(csr, policy);
}

/**
 * The policy without the signature check (the server verifies the signature in the
 * same job that signs the certificate, see signCertificateForCsr).
 */
export function checkDevicePolicy(csr: ParsedCsr, policy: DevicePolicy): DeviceIdentity {
  const { cn, ou, production } = deviceSubjectOf(csr);
  if (ou !== policy.factory) throw new KilnError('policy', `csr OU "${printable(ou)}" is not this factory (${policy.factory})`);
  if (!isCanonicalUuid(cn)) throw new KilnError('policy', `csr CN "${printable(cn)}" is not a canonical UUID`);
  if (cn === NIL_UUID) throw new KilnError('policy', 'csr CN is the nil UUID');
  checkKey(csr, policy);
  return { uuid: cn.toLowerCase(), production };
}

const NIL_UUID = '00000000-0000-0000-0000-000000000000';

const ALLOWED = new Map<string, string>([
  [OID.commonName, 'CN'],
  [OID.organizationalUnit, 'OU'],
  [OID.businessCategory, 'businessCategory'],
]);

/**
 * A device subject reads one way only: exactly one CN and one OU, at most one
 * businessCategory (whose only value is "production"), and nothing else. A gateway
 * that reads the last CN must see the device Kiln recorded.
 */
function deviceSubjectOf(csr: ParsedCsr): { cn: string; ou: string; production: boolean } {
  const seen = new Map<string, string[]>();
  for (const a of csr.subject) {
    const label = ALLOWED.get(a.oid);
    if (!label)
      throw new KilnError(
        'policy',
        `csr subject has ${ATTRIBUTE_NAMES[a.oid] ?? a.oid}, which a device subject must not have (only CN, OU, businessCategory)`,
      );
    seen.set(a.oid, [...(seen.get(a.oid) ?? []), a.value]);
  }
  const one = (oid: string, what: string): string => {
    const values = seen.get(oid) ?? [];
    if (values.length === 0) throw new KilnError('policy', `csr subject has no ${ALLOWED.get(oid)} (${what})`);
    if (values.length > 1) throw new KilnError('policy', `csr subject has ${values.length} ${ALLOWED.get(oid)}s (exactly one ${what})`);
    return values[0];
  };
  const cn = one(OID.commonName, 'the device UUID');
  const ou = one(OID.organizationalUnit, 'the factory name');
  const bc = seen.get(OID.businessCategory) ?? [];
  if (bc.length > 1) throw new KilnError('policy', `csr subject has ${bc.length} businessCategory attributes (at most one)`);
  if (bc.length === 1 && bc[0] !== 'production')
    throw new KilnError('policy', `csr businessCategory "${printable(bc[0])}" is not allowed (only "production")`);
  return { cn, ou, production: bc.length === 1 };
}

function checkKey(csr: ParsedCsr, policy: DevicePolicy): void {
  const k = csr.keyInfo;
  if (k.type === 'ec' && k.curve && policy.ecCurves.includes(k.curve)) return;
  if (k.type === 'rsa' && policy.minRsaBits > 0 && (k.bits ?? 0) >= policy.minRsaBits) return;
  const what = k.type === 'ec' ? `EC ${k.curve ?? 'unknown curve'}` : k.type === 'rsa' ? `RSA ${k.bits ?? '?'} bits` : 'this key type';
  const allowed = [...policy.ecCurves.map(curveLabel), ...(policy.minRsaBits > 0 ? [`RSA >= ${policy.minRsaBits}`] : [])].join(', ');
  throw new KilnError('policy', `csr key ${what} is not allowed (allowed: ${allowed})`);
}

const curveLabel = (c: string): string => ({ prime256v1: 'EC P-256', secp384r1: 'EC P-384' })[c] ?? `EC ${c}`;

/** Keeps reasons one line and short: control characters out, length capped. */
function printable(s: string): string {
  const clean = s.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 64 ? clean.slice(0, 61) + '...' : clean;
}
