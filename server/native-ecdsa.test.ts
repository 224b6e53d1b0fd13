// The native ECDSA addon must agree with node:crypto on every input, valid or not,
// and sign only for CSRs whose signature verifies.
import { generateKeyPairSync, randomBytes, sign, verify as nodeVerify, X509Certificate, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createCa } from '../pki/ca.js';
import { signCertificateForCsr } from '../pki/certificate.js';
import { ecSignatureCheck, parseCsr, verifyCsrSignature } from '../pki/csr.js';
import { createCsr, DEVICE_CSR_EXTENSIONS, deviceSubject } from '../pki/csr-builder.js';
import { unpem } from '../pki/der.js';
import { KilnError } from '../pki/errors.js';
import { createFactoryPki } from '../pki/factory-pki.js';
import { deviceTemplate } from '../pki/profiles.js';
import { randomSerial } from '../pki/serial.js';
import { createPemSigner, type Signer } from '../pki/signer.js';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { ownPolicy, policyFromStat, SCHED_BATCH, SCHED_OTHER, threadPolicies } from '../test/helpers/sched.js';
import { backgroundThread, loadNativeEcdsa, NATIVE_ECDSA } from './native-ecdsa.js';

const loaded = loadNativeEcdsa();
const verify = loaded.verifier!;

function point(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  return Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
}

const verifyNode = (key: KeyObject, data: Buffer, sig: Buffer): boolean => {
  try {
    return nodeVerify('sha256', data, key, sig);
  } catch {
    return false;
  }
};

const CURVES = [
  ['prime256v1', 'sha256'],
  ['secp384r1', 'sha384'],
  ['secp521r1', 'sha512'],
] as const;

describe('native EC verifier', () => {
  it('is built and loads (npm run build puts it in dist/); a missing addon means node:crypto', () => {
    expect(loaded.backend).toBe('native');
    expect(typeof verify).toBe('function');
    const missing = loadNativeEcdsa('/nonexistent/kiln_ecdsa.node');
    expect(missing.backend).toBe('node:crypto');
    expect(missing.verifier).toBeUndefined();
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' });
    expect(missing.pemSigner(key).verifyAndSign).toBeUndefined();
  });

  it.each(CURVES)('%s/%s: true for good signatures, false for wrong data, key or signature bytes', async (curve, hash) => {
    for (let i = 0; i < 40; i++) {
      const a = generateKeyPairSync('ec', { namedCurve: curve });
      const b = generateKeyPairSync('ec', { namedCurve: curve });
      const data = randomBytes(1 + i * 7);
      const sig = sign(hash, data, a.privateKey);
      expect(await verify(curve, point(a.publicKey), hash, data, sig)).toBe(true);
      const other = Buffer.from(data);
      other[i % other.length] ^= 0x01;
      expect(await verify(curve, point(a.publicKey), hash, other, sig)).toBe(false);
      expect(await verify(curve, point(b.publicKey), hash, data, sig)).toBe(false);
      const flipped = Buffer.from(sig);
      flipped[flipped.length - 1 - (i % 8)] ^= 0x40;
      expect(await verify(curve, point(a.publicKey), hash, data, flipped)).toBe(false);
      expect(await verify(curve, point(a.publicKey), hash, data, Buffer.concat([sig, Buffer.from([0])]))).toBe(false);
      expect(await verify(curve, point(a.publicKey), hash, data, sig.subarray(0, sig.length - 1))).toBe(false);
    }
  });

  it('refuses non-canonical DER signatures, as node:crypto does', async () => {
    const a = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const data = randomBytes(100);
    const sig = sign('sha256', data, a.privateKey);
    expect(sig[1]).toBeLessThan(0x80);
    // the same ECDSA-Sig-Value with its SEQUENCE length in long form (BER, not DER)
    const longForm = Buffer.concat([Buffer.from([0x30, 0x81, sig[1]]), sig.subarray(2)]);
    // r with a superfluous leading zero byte
    const rLen = sig[3];
    const r = sig.subarray(4, 4 + rLen);
    const rest = sig.subarray(4 + rLen);
    const padded = Buffer.concat([Buffer.from([0x30, sig[1] + 1, 0x02, rLen + 1, 0x00]), r, rest]);
    for (const bad of [longForm, padded]) {
      expect(verifyNode(a.publicKey, data, bad)).toBe(false);
      expect(await verify('prime256v1', point(a.publicKey), 'sha256', data, bad)).toBe(false);
    }
  });

  it('refuses points that are not on the curve, the point at infinity and wrong lengths', async () => {
    const a = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const data = randomBytes(64);
    const sig = sign('sha256', data, a.privateKey);
    const off = point(a.publicKey);
    off[64] ^= 0x01;
    await expect(verify('prime256v1', off, 'sha256', data, sig)).rejects.toThrow(/not a point on the curve/);
    await expect(verify('prime256v1', Buffer.from([0]), 'sha256', data, sig)).rejects.toThrow(/not a point on the curve/);
    await expect(verify('prime256v1', point(a.publicKey).subarray(0, 64), 'sha256', data, sig)).rejects.toThrow(/not a point/);
    await expect(verify('secp384r1', point(a.publicKey), 'sha384', data, sig)).rejects.toThrow(/not a point/);
    await expect(verify('prime256v1', point(a.publicKey), 'md5', data, sig)).rejects.toThrow(/unsupported hash/);
  });

  it('a CSR verifies, and a CSR with one changed subject byte does not, the same with and without it', async () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const uuid = '3f1c7a52-9b1e-4c55-8f0e-6d2a1b7c9e41';
    const der = await createCsr({ subject: deviceSubject(uuid, 'acme', false), key: key.privateKey, extensions: DEVICE_CSR_EXTENSIONS() });
    const good = parseCsr(der);
    expect(good.ecPoint?.equals(point(key.publicKey))).toBe(true);
    await verifyCsrSignature(good, verify);
    await verifyCsrSignature(good);

    const bad = Buffer.from(der);
    bad[bad.indexOf(Buffer.from(uuid)) + 3] ^= 0x01;
    for (const v of [verify, undefined]) {
      const err = await verifyCsrSignature(parseCsr(bad), v).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KilnError);
      expect((err as KilnError).message).toBe('csr signature does not verify');
    }
  });

  it('an off-curve CSR key is refused as unreadable, with and without it', async () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const der = await createCsr({
      subject: deviceSubject('3f1c7a52-9b1e-4c55-8f0e-6d2a1b7c9e41', 'acme', false),
      key: key.privateKey,
      extensions: [],
    });
    const p = point(key.publicKey);
    const bad = Buffer.from(der);
    bad[bad.indexOf(p) + 64] ^= 0x01;
    for (const v of [verify, undefined]) {
      const err = await verifyCsrSignature(parseCsr(bad), v).catch((e: unknown) => e);
      expect((err as KilnError).message).toBe('csr public key is not readable');
    }
  });
});

const pemOf = (k: KeyObject): string => k.export({ type: 'pkcs8', format: 'pem' }) as string;
const verifies = (signer: Signer, data: Uint8Array, sig: Buffer): boolean =>
  nodeVerify(signer.algorithm.hash, data, { key: signer.spkiDer, format: 'der', type: 'spki', dsaEncoding: 'der' }, sig);

describe('native EC signer', () => {
  it.each(CURVES)('a %s CA key in a PEM file signs natively (%s); node:crypto verifies every signature', async (curve, hash) => {
    const signer = loaded.pemSigner(pemOf(generateKeyPairSync('ec', { namedCurve: curve }).privateKey));
    expect(signer.verifyAndSign).toBeTypeOf('function');
    expect(signer.algorithm.hash).toBe(hash);
    for (let i = 0; i < 20; i++) {
      const data = randomBytes(1 + i * 50);
      const sig = await signer.sign(data);
      expect(verifies(signer, data, sig)).toBe(true);
      data[0] ^= 1;
      expect(verifies(signer, data, sig)).toBe(false);
    }
  });

  it("data above the addon's 64 KiB (a CRL of thousands of entries) is signed too, and verifies", async () => {
    const signer = loaded.pemSigner(pemOf(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey));
    for (const size of [64 * 1024, 64 * 1024 + 1, 4 * 1024 * 1024]) {
      const data = randomBytes(size);
      expect(verifies(signer, data, await signer.sign(data)), String(size)).toBe(true);
    }
  });

  it('the addon signs only with keys it made: other values are refused before any job', () => {
    const addon = createRequire(import.meta.url)(NATIVE_ECDSA()) as {
      signingKey(pem: Uint8Array): object;
      sign(key: unknown, hash: string, data: Uint8Array, cb: () => void): void;
    };
    const key = addon.signingKey(Buffer.from(pemOf(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey)));
    expect(() => addon.sign(key, 'md5', Buffer.alloc(1), () => {})).toThrow(/unsupported hash/);
    for (const notKey of [{}, Buffer.alloc(64), 'key', null])
      expect(() => addon.sign(notKey, 'sha256', Buffer.alloc(1), () => {})).toThrow(/key must come from signingKey/);
    expect(() => addon.signingKey(Buffer.from(pemOf(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey)))).toThrow(
      /EC private key/,
    );
    expect(() => addon.signingKey(Buffer.from('not a key'))).toThrow(/EC private key/);
  });

  it('an RSA CA key stays with node:crypto (no verifyAndSign) and still signs', async () => {
    const signer = loaded.pemSigner(pemOf(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey));
    expect(signer.verifyAndSign).toBeUndefined();
    const data = randomBytes(100);
    expect(verifies(signer, data, await signer.sign(data))).toBe(true);
  });

  it('one key shared by every pool thread: 256 concurrent signatures all verify and all differ', async () => {
    const signer = loaded.pemSigner(pemOf(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey));
    const data = Array.from({ length: 256 }, (_, i) => randomBytes(200 + i));
    const sigs = await Promise.all(data.map((d) => signer.sign(d)));
    sigs.forEach((sig, i) => expect(verifies(signer, data[i], sig)).toBe(true));
    expect(new Set(sigs.map((s) => s.toString('hex'))).size).toBe(256);
  });

  it('the pool threads that ran its jobs are SCHED_BATCH; the thread that queued them is not', async () => {
    const signer = loaded.pemSigner(pemOf(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey));
    await Promise.all(Array.from({ length: 64 }, () => signer.sign(randomBytes(100))));
    expect(threadPolicies().filter((p) => p === SCHED_BATCH).length).toBeGreaterThanOrEqual(1);
    expect(ownPolicy()).toBe(SCHED_OTHER);
  });

  it('backgroundThread() makes the calling thread SCHED_BATCH, and only it; false without the addon', async () => {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const { readFileSync } = require('node:fs');
      const stat = () => readFileSync('/proc/thread-self/stat', 'utf8');
      const before = stat();
      const ok = require(workerData).backgroundThread();
      parentPort.postMessage({ before, ok, after: stat() });`;
    const worker = new Worker(code, { eval: true, workerData: NATIVE_ECDSA() });
    const seen = await new Promise<{ before: string; ok: boolean; after: string }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    expect({ before: policyFromStat(seen.before), ok: seen.ok, after: policyFromStat(seen.after) }).toEqual({
      before: SCHED_OTHER,
      ok: true,
      after: SCHED_BATCH,
    });
    expect(ownPolicy()).toBe(SCHED_OTHER);
    expect(backgroundThread('/nonexistent/kiln_ecdsa.node')).toBe(false);
    expect(ownPolicy()).toBe(SCHED_OTHER);
  });

  it('verifyAndSign signs only for a CSR whose signature verifies', async () => {
    const signer = loaded.pemSigner(pemOf(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey));
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const der = await createCsr({
      subject: deviceSubject('3f1c7a52-9b1e-4c55-8f0e-6d2a1b7c9e41', 'acme', false),
      key: key.privateKey,
      extensions: [],
    });
    const tbs = randomBytes(400);
    const good = ecSignatureCheck(parseCsr(der))!;
    const sig = await signer.verifyAndSign!(good, tbs);
    expect(Buffer.isBuffer(sig) && verifies(signer, tbs, sig)).toBe(true);

    const wrong = { ...good, data: Buffer.from(good.data) };
    wrong.data[10] ^= 0x01;
    expect(await signer.verifyAndSign!(wrong, tbs)).toBe('wrong-signature');
    const offCurve = { ...good, point: Buffer.from(good.point) };
    offCurve.point[64] ^= 0x01;
    expect(await signer.verifyAndSign!(offCurve, tbs)).toBe('bad-key');
  });
});

describe('signCertificateForCsr', async () => {
  const files = await createFactoryPki({ factory: 'acme', owner: 'o', dnsNames: ['gw'], now: new Date() });
  const get = (n: string): string => files.find((f) => f.name === n)!.content;
  const caDer = unpem(get('local-ca.pem'), ['CERTIFICATE'])!;
  const signers = { native: loaded.pemSigner(get('local-ca.key')), 'node:crypto': createPemSigner(get('local-ca.key')) };

  it.each(Object.keys(signers))('with the %s signer: a certificate for a good CSR, the same refusals for bad ones', async (which) => {
    const ca = createCa(caDer, signers[which as keyof typeof signers]);
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const uuid = '3f1c7a52-9b1e-4c55-8f0e-6d2a1b7c9e41';
    const der = await createCsr({ subject: deviceSubject(uuid, 'acme', false), key: key.privateKey, extensions: DEVICE_CSR_EXTENSIONS() });
    const issue = (csrDer: Buffer): Promise<Buffer> => {
      const csr = parseCsr(csrDer);
      return signCertificateForCsr(
        deviceTemplate({ ca, csr, serial: randomSerial(randomBytes), notBefore: new Date(), validityDays: 1 }),
        ca.signer,
        csr,
        verify,
      );
    };
    const cert = new X509Certificate(await issue(der));
    expect(cert.verify(new X509Certificate(caDer).publicKey)).toBe(true);
    expect(cert.subject).toContain(`CN=${uuid}`);

    const wrong = Buffer.from(der);
    wrong[wrong.indexOf(Buffer.from(uuid)) + 3] ^= 0x01;
    await expect(issue(wrong)).rejects.toThrow(new KilnError('bad_csr', 'csr signature does not verify'));
    const offCurve = Buffer.from(der);
    offCurve[offCurve.indexOf(point(key.publicKey)) + 64] ^= 0x01;
    await expect(issue(offCurve)).rejects.toThrow(new KilnError('bad_csr', 'csr public key is not readable'));
  });
});
