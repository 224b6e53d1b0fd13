// Strict input: a CSR is signed only if it reads one way. Each `fail/…` case is a
// refusal class of issue 14 with its one-line reason; each is signed correctly so
// that it fails for the reason it names.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { forgeCsrDer, nonMinimalLength, p256Key, rawAtv, type Forge } from '../test/helpers/csr-forge.js';
import { parseCsrPem, verifyCsrSignature } from './csr.js';
import { bitString, explicit, nullValue, oid, pem, seq, set, tlv, TAG, uint, utf8 } from './der.js';
import { KilnError } from './errors.js';
import { OID } from './oids.js';
import { checkDevicePolicy, DEFAULT_KEY_POLICY } from './policy.js';

const FACTORY = 'acme';
const policy = { factory: FACTORY, ...DEFAULT_KEY_POLICY };
const cn = (v: string) => ({ oid: OID.commonName, value: v });
const ou = (v: string) => ({ oid: OID.organizationalUnit, value: v });
const bc = (v: string) => ({ oid: OID.businessCategory, value: v });

/** Parses and checks as /sign does (structure, policy, signature); resolves the reason of a refusal. */
async function outcome(text: string): Promise<string> {
  try {
    const csr = parseCsrPem(text);
    checkDevicePolicy(csr, policy);
    await verifyCsrSignature(csr);
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(KilnError);
    const e = err as KilnError;
    expect(e.httpStatus).toBe(400);
    expect(e.message).not.toContain('\n');
    return e.message;
  }
}

const forged = async (f: Forge | ((uuid: string) => Forge)): Promise<string> => {
  const uuid = randomUUID();
  return pem('CERTIFICATE REQUEST', await forgeCsrDer(uuid, FACTORY, typeof f === 'function' ? f(uuid) : f));
};
const derCsr = async (edit: (der: Buffer) => Buffer): Promise<string> =>
  pem('CERTIFICATE REQUEST', edit(await forgeCsrDer(randomUUID(), FACTORY)));

describe('CSR structure and subject: sign only what reads one way', () => {
  it.each<[string, () => Promise<string>]>([
    ['ok/p256', () => forged({})],
    ['ok/p384', () => forged({ key: generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey })],
    ['ok/rsa-2048', () => forged({ key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey })],
    ['ok/production', () => forged((u) => ({ subject: [cn(u), ou(FACTORY), bc('production')] }))],
    [
      'ok/printable-string values',
      () =>
        forged((u) => ({
          subject: seq(
            set(rawAtv(oid(OID.commonName).subarray(2), TAG.PRINTABLE_STRING, Buffer.from(u))),
            set(seq(oid(OID.organizationalUnit), utf8(FACTORY))),
          ),
        })),
    ],
  ])('%s', async (_n, make) => {
    expect(await outcome(await make())).toBe('ok');
  });

  it.each<[string, () => Promise<string>, RegExp]>([
    // subject
    [
      'fail/two-cns',
      () => forged((u) => ({ subject: [cn(u), ou(FACTORY), cn(randomUUID())] })),
      /^csr subject has 2 CNs \(exactly one the device UUID\)$/,
    ],
    ['fail/two-ous', () => forged((u) => ({ subject: [cn(u), ou(FACTORY), ou('other')] })), /^csr subject has 2 OUs/],
    [
      'fail/two-business-categories',
      () => forged((u) => ({ subject: [cn(u), ou(FACTORY), bc('production'), bc('production')] })),
      /2 businessCategory/,
    ],
    [
      'fail/business-category-not-production',
      () => forged((u) => ({ subject: [cn(u), ou(FACTORY), bc('test')] })),
      /businessCategory "test" is not allowed/,
    ],
    [
      'fail/extra-attribute',
      () => forged((u) => ({ subject: [cn(u), ou(FACTORY), { oid: '2.5.4.10', value: 'x' }] })),
      /subject has O, which a device subject must not have/,
    ],
    ['fail/nil-uuid', () => forged({ subject: [cn('00000000-0000-0000-0000-000000000000'), ou(FACTORY)] }), /nil UUID/],
    [
      'fail/multi-valued-rdn',
      () => forged((u) => ({ subject: seq(set(seq(oid(OID.commonName), utf8(u)), seq(oid(OID.organizationalUnit), utf8(FACTORY)))) })),
      /relative distinguished name with 2 attributes/,
    ],
    [
      'fail/t61-string',
      () =>
        forged((u) => ({
          subject: seq(
            set(rawAtv(oid(OID.commonName).subarray(2), 0x14, Buffer.from(u))),
            set(seq(oid(OID.organizationalUnit), utf8(FACTORY))),
          ),
        })),
      /must be a UTF8String or PrintableString/,
    ],
    [
      'fail/invalid-utf8',
      () =>
        forged((u) => ({
          subject: seq(
            set(seq(oid(OID.commonName), utf8(u))),
            set(rawAtv(oid(OID.organizationalUnit).subarray(2), TAG.UTF8_STRING, Buffer.from([0x61, 0xc3, 0x28]))),
          ),
        })),
      /OU is not valid UTF-8/,
    ],
    [
      'fail/printable-string-alphabet',
      () =>
        forged((u) => ({
          subject: seq(
            set(seq(oid(OID.commonName), utf8(u))),
            set(rawAtv(oid(OID.organizationalUnit).subarray(2), TAG.PRINTABLE_STRING, Buffer.from('ac*me'))),
          ),
        })),
      /characters a PrintableString cannot hold/,
    ],
    // OIDs
    [
      'fail/unterminated-oid',
      () =>
        forged((u) => ({
          subject: seq(
            set(seq(oid(OID.commonName), utf8(u))),
            set(seq(oid(OID.organizationalUnit), utf8(FACTORY))),
            set(rawAtv(Buffer.from([0x55, 0x04, 0x83]), TAG.UTF8_STRING, Buffer.from('x'))),
          ),
        })),
      /OID ends inside an arc/,
    ],
    [
      'fail/non-minimal-oid-arc',
      () =>
        forged((u) => ({
          subject: seq(
            set(seq(oid(OID.commonName), utf8(u))),
            set(rawAtv(Buffer.from([0x55, 0x80, 0x0b]), TAG.UTF8_STRING, Buffer.from(FACTORY))),
          ),
        })),
      /non-minimal OID arc/,
    ],
    // lengths and extra bytes
    ['fail/non-minimal-length', () => derCsr(nonMinimalLength), /non-minimal DER length/],
    [
      'fail/indefinite-length',
      () => derCsr((d) => Buffer.concat([Buffer.from([0x30, 0x80]), d.subarray(d[1] & 0x80 ? 2 + (d[1] & 0x7f) : 2), Buffer.from([0, 0])])),
      /indefinite length is not DER/,
    ],
    ['fail/element-after-the-three', () => forged({ trailing: [uint(1)] }), /CertificationRequest has 4 elements, expected 3/],
    [
      'fail/bytes-after-the-structure',
      () => derCsr((d) => Buffer.concat([d, Buffer.from([0x05, 0x00])])),
      /trailing data after DER element/,
    ],
    [
      'fail/element-after-attributes',
      () => forged({ info: (i) => seq(...[i.subarray(i[1] & 0x80 ? 2 + (i[1] & 0x7f) : 2)], uint(7)) }),
      /CertificationRequestInfo has 5 elements/,
    ],
    // version and attributes
    ['fail/version-1', () => forged({ version: uint(1) }), /version must be 0/],
    ['fail/version-not-minimal', () => forged({ version: tlv(TAG.INTEGER, Buffer.from([0, 0])) }), /version is not a minimal INTEGER/],
    [
      'fail/no-attributes',
      () =>
        forged({
          info: (i) => {
            const body = i.subarray(i[1] & 0x80 ? 2 + (i[1] & 0x7f) : 2);
            const parts = splitTop(body);
            return seq(...parts.slice(0, 3));
          },
        }),
      /CertificationRequestInfo has 3 elements, expected 4/,
    ],
    ['fail/attributes-wrong-tag', () => forged({ attributes: set() }), /expected attributes \[0\]/],
    [
      'fail/critical-false-encoded',
      () =>
        forged({
          attributes: explicit(
            0,
            seq(
              oid(OID.extensionRequest),
              set(seq(seq(oid(OID.keyUsage), tlv(TAG.BOOLEAN, Buffer.from([0])), tlv(TAG.OCTET_STRING, Buffer.from('03020780', 'hex'))))),
            ),
          ),
        }),
      /critical must be absent or TRUE/,
    ],
    // signature algorithm and value
    [
      'fail/wrong-algorithm-rsa-for-ec',
      () => forged({ algorithm: seq(oid(OID.sha256WithRsa), nullValue()) }),
      /signature algorithm 1\.2\.840\.113549\.1\.1\.11 does not match its EC key/,
    ],
    [
      'fail/wrong-algorithm-ecdsa-for-rsa',
      () => forged({ key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, algorithm: seq(oid(OID.ecdsaSha256)) }),
      /does not match its RSA key/,
    ],
    ['fail/sha1', () => forged({ algorithm: seq(oid('1.2.840.10045.4.1')) }), /not supported \(ECDSA or RSA with SHA-256 or stronger\)/],
    ['fail/ecdsa-with-null-parameters', () => forged({ algorithm: seq(oid(OID.ecdsaSha256), nullValue()) }), /parameters it must not have/],
    ['fail/empty-signature', () => forged({ signature: () => Buffer.alloc(0) }), /^csr signature is empty$/],
    [
      'fail/161-byte-signature',
      () => forged({ signature: () => Buffer.alloc(161, 0x30) }),
      /signature is 161 bytes, longer than any prime256v1 ECDSA signature/,
    ],
    ['fail/signature-not-der', () => forged({ signature: () => Buffer.alloc(70, 0x41) }), /not a DER ECDSA signature/],
    ['fail/signature-zero-r', () => forged({ signature: () => seq(uint(0), uint(5)) }), /not a DER ECDSA signature/],
    ['fail/wrong-signature', () => forged({ signature: (s) => ((s[s.length - 1] ^= 1), s) }), /^csr signature does not verify$/],
    [
      'fail/signature-unused-bits',
      () =>
        derCsr((d) => {
          const i = d.lastIndexOf(0x03, d.length - 70);
          d[i + 2] = 1;
          return d;
        }),
      /signature has unused bits/,
    ],
  ])('%s', async (_n, make, reason) => {
    expect(await outcome(await make())).toMatch(reason);
  });
});

describe('PEM: exactly one CERTIFICATE REQUEST block, nothing but whitespace around it', () => {
  it.each<[string, (p: string) => string, RegExp | 'ok']>([
    ['ok/surrounding whitespace and CRLF', (p) => `\r\n  ${p.replace(/\n/g, '\r\n')}\n\n`, 'ok'],
    ['fail/two-blocks', (p) => p + p, /text after -----END CERTIFICATE REQUEST-----/],
    ['fail/text-before', (p) => 'hello\n' + p, /text before/],
    ['fail/text-after', (p) => p + 'bye', /text after/],
    [
      'fail/new-certificate-request-label',
      (p) => p.replace(/CERTIFICATE REQUEST/g, 'NEW CERTIFICATE REQUEST'),
      /text before|no -----BEGIN/,
    ],
    ['fail/certificate-label', (p) => p.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE'), /no -----BEGIN CERTIFICATE REQUEST-----/],
    ['fail/not-base64', (p) => p.replace(/\n(.)/, '\n*'), /not base64/],
    ['fail/bad-padding', (p) => p.replace(/-----END/, '=\n-----END'), /not base64/],
    ['fail/no-end', (p) => p.replace(/-----END CERTIFICATE REQUEST-----\n/, ''), /no -----END/],
  ])('%s', async (_n, edit, want) => {
    const text = edit(await forged({}));
    const got = await outcome(text);
    if (want === 'ok') expect(got).toBe('ok');
    else {
      expect(got).toMatch(/^csr is not one PEM certificate request: /);
      expect(got).toMatch(want);
    }
  });
});

/** The top-level elements of a DER body, as raw slices. */
function splitTop(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < body.length;) {
    const n = body[off + 1] & 0x80 ? body[off + 1] & 0x7f : 0;
    const len = n ? body.subarray(off + 2, off + 2 + n).reduce((a, b) => a * 256 + b, 0) : body[off + 1];
    out.push(body.subarray(off, off + 2 + n + len));
    off += 2 + n + len;
  }
  return out;
}

// keep bitString and p256Key referenced for readers extending the table
void bitString;
void p256Key;
