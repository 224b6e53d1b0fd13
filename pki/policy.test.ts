import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deviceCsr, FACTORY, tempDir } from '../test/helpers/pki.js';
import { run } from '../test/helpers/proc.js';
import { parseCsrPem } from './csr.js';
import { createCsr, deviceSubject } from './csr-builder.js';
import { pem } from './der.js';
import { KilnError } from './errors.js';
import { OID } from './oids.js';
import { checkDeviceCsr, DEFAULT_KEY_POLICY } from './policy.js';

const policy = { factory: FACTORY, ...DEFAULT_KEY_POLICY };

const keyOf = (kind: string): KeyObject => {
  if (kind === 'p384') return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
  if (kind === 'p521') return generateKeyPairSync('ec', { namedCurve: 'P-521' }).privateKey;
  if (kind === 'secp256k1') return generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey;
  if (kind === 'rsa2048') return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  if (kind === 'rsa1024') return generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
};

async function csrWith(subject: { oid: string; value: string }[], kind = 'p256'): Promise<string> {
  return pem('CERTIFICATE REQUEST', await createCsr({ subject, key: keyOf(kind) }));
}

describe('checkDeviceCsr', () => {
  it('ok/p256: the CSR device-register makes verifies with openssl and passes', async () => {
    const { uuid, csrPem } = await deviceCsr({ production: true });
    const dir = tempDir();
    writeFileSync(join(dir, 'd.csr'), csrPem);
    const r = run('openssl', ['req', '-in', join(dir, 'd.csr'), '-verify', '-noout', '-text']);
    expect(r.stderr + r.stdout).toMatch(/verify OK/i);
    expect(r.stdout).toContain('Digital Signature');
    expect(r.stdout).toContain('TLS Web Client Authentication');
    expect(await checkDeviceCsr(parseCsrPem(csrPem), policy)).toEqual({ uuid, production: true });
  });

  it.each(['p384', 'rsa2048'])('ok/%s key is accepted', async (kind) => {
    const uuid = randomUUID();
    const id = await checkDeviceCsr(parseCsrPem(await csrWith(deviceSubject(uuid, FACTORY, false), kind)), policy);
    expect(id).toEqual({ uuid, production: false });
  });

  it('ok/upper-case UUID is normalised to lower case', async () => {
    const uuid = randomUUID().toUpperCase();
    expect((await checkDeviceCsr(parseCsrPem(await csrWith(deviceSubject(uuid, FACTORY, false))), policy)).uuid).toBe(uuid.toLowerCase());
  });

  const cases: [string, () => Promise<string>, RegExp][] = [
    ['fail/rsa1024', () => csrWith(deviceSubject(randomUUID(), FACTORY, false), 'rsa1024'), /RSA 1024 bits is not allowed/],
    ['fail/p521', () => csrWith(deviceSubject(randomUUID(), FACTORY, false), 'p521'), /EC secp521r1 is not allowed/],
    ['fail/secp256k1', () => csrWith(deviceSubject(randomUUID(), FACTORY, false), 'secp256k1'), /not allowed/],
    ['fail/no-cn', () => csrWith([{ oid: OID.organizationalUnit, value: FACTORY }]), /no CN/],
    ['fail/no-ou', () => csrWith([{ oid: OID.commonName, value: randomUUID() }]), /no OU/],
    ['fail/wrong-ou', () => csrWith(deviceSubject(randomUUID(), 'other-factory', false)), /OU "other-factory" is not this factory/],
    ['fail/cn-not-uuid', () => csrWith(deviceSubject('my-device-01', FACTORY, false)), /CN "my-device-01" is not a canonical UUID/],
    ['fail/uuid-without-dashes', () => csrWith(deviceSubject(randomUUID().replace(/-/g, ''), FACTORY, false)), /not a canonical UUID/],
  ];
  it.each(cases)('%s', async (_name, make, reason) => {
    const csr = parseCsrPem(await make());
    const err = await checkDeviceCsr(csr, policy).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KilnError);
    expect((err as KilnError).httpStatus).toBe(400);
    expect((err as KilnError).message).toMatch(reason);
  });

  it('fail/bad-signature: a CSR whose signature was corrupted is refused', async () => {
    const { csrPem } = await deviceCsr();
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 5] ^= 0x01; // inside the signature value
    const bad = pem('CERTIFICATE REQUEST', der);
    await expect(checkDeviceCsr(parseCsrPem(bad), policy)).rejects.toThrow(/signature does not verify/);
  });

  it('fail/tampered-subject: a CSR whose signed info was changed is refused', async () => {
    const uuid = randomUUID();
    const { csrPem } = await deviceCsr({ uuid });
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const other = randomUUID();
    const tampered = Buffer.from(der.toString('latin1').replace(uuid, other), 'latin1');
    await expect(checkDeviceCsr(parseCsrPem(pem('CERTIFICATE REQUEST', tampered)), policy)).rejects.toThrow(/signature does not verify/);
  });

  it.each([
    ['fail/not-pem', 'hello'],
    ['fail/garbage-der', pem('CERTIFICATE REQUEST', Buffer.from('3003020101', 'hex'))],
    ['fail/truncated', pem('CERTIFICATE REQUEST', Buffer.from('30820100', 'hex'))],
  ])('%s does not parse', (_n, text) => {
    expect(() => parseCsrPem(text)).toThrow(KilnError);
  });
});
