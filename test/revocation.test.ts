// Taking an identity back (issue 17): revocation, the CRL (checked by OpenSSL) for file
// and SoftHSM2 keys, the CRL file, the distribution point in new certificates.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FACTORY, tempDir } from './helpers/pki.js';
import { registerAt } from './helpers/site.js';
import { kilnctl, run, startKilnctl, type ServerProcess } from './helpers/proc.js';
import { makeSoftHsm, uriFor } from './helpers/softhsm.js';

const register = registerAt;

async function crlNumberAbove(server: ServerProcess, n: number): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const h = (await (await fetch(`${server.url}/healthz`)).json()) as { crl?: { number?: number } };
    if ((h.crl?.number ?? 0) > n) return h.crl!.number!;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the CRL was not refreshed');
}

/** openssl verify with the CRL; the chain is root + local CA. */
function verifyWithCrl(work: string, pkiDir: string, certPem: string, crlPem: string) {
  const cert = join(work, `cert-${Math.random().toString(36).slice(2)}.pem`);
  const crl = join(work, 'crl.pem');
  writeFileSync(cert, certPem);
  writeFileSync(crl, crlPem);
  return run('openssl', [
    'verify',
    '-crl_check',
    '-CAfile',
    join(pkiDir, 'factory_ca.pem'),
    '-untrusted',
    join(pkiDir, 'local-ca.pem'),
    '-CRLfile',
    crl,
    cert,
  ]);
}

async function flow(caKeyArgs: string[], env: NodeJS.ProcessEnv, pkiDir: string, work: string): Promise<void> {
  const db = `sqlite:${join(work, 'kiln.db')}`;
  const crlFile = join(work, 'published.crl');
  const server = await startKilnctl(['--pki-dir', pkiDir, '--db', db, '--crl-file', crlFile, ...caKeyArgs], env);
  try {
    const good = await register(server);
    const bad = await register(server);
    const before = (await (await fetch(`${server.url}/healthz`)).json()) as { crl: { number: number; state: string } };
    expect(before.crl.state).toBe('ok');

    const r = kilnctl(['devices', 'revoke', bad.uuid, '--reason', 'keyCompromise', '--db', db]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const number = await crlNumberAbove(server, before.crl.number);

    const res = await fetch(`${server.url}/crl`);
    expect(res.headers.get('content-type')).toBe('application/pkix-crl');
    const der = Buffer.from(await res.arrayBuffer());
    const pemText = await (await fetch(`${server.url}/crl.pem`)).text();
    expect(readFileSync(crlFile, 'utf8')).toBe(pemText);
    writeFileSync(join(work, 'crl.der'), der);

    // OpenSSL: the CRL is signed by the local CA; it lists the revoked device with its reason
    const check = run('openssl', [
      'crl',
      '-inform',
      'DER',
      '-in',
      join(work, 'crl.der'),
      '-CAfile',
      join(pkiDir, 'local-ca.pem'),
      '-noout',
      '-verify',
    ]);
    expect(check.stdout + check.stderr).toMatch(/verify OK/);
    const text = run('openssl', ['crl', '-inform', 'DER', '-in', join(work, 'crl.der'), '-noout', '-text']).stdout;
    expect(text).toMatch(new RegExp(`X509v3 CRL Number: \\n\\s+${number}\\b`));
    expect(text).toContain('Key Compromise');
    expect(text).toMatch(/Next Update:/);

    const refused = verifyWithCrl(work, pkiDir, bad.pem, pemText);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toMatch(/certificate revoked/);
    const accepted = verifyWithCrl(work, pkiDir, good.pem, pemText);
    expect(accepted.stdout).toMatch(/: OK$/m);
  } finally {
    await server.stop();
  }
}

describe('revocation and the CRL', () => {
  it('ok/file key: a revoked certificate fails openssl verify -crl_check, a good one passes', async () => {
    const work = tempDir();
    const pkiDir = join(work, 'pki');
    expect(kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']).code).toBe(0);
    await flow([], {}, pkiDir, work);
  });

  it('ok/SoftHSM2 key: the CRL is signed in the token and verifies the same way', async () => {
    const hsm = makeSoftHsm();
    hsm.initToken('kiln-crl', '1234', '5678');
    const uri = uriFor('kiln-crl', 'local-ca', hsm.pinFile('1234'));
    const work = tempDir();
    const pkiDir = join(work, 'pki');
    expect(
      kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test', '--ca-key', uri], { env: hsm.env })
        .code,
    ).toBe(0);
    await flow(['--ca-key', uri], hsm.env, pkiDir, work);
  });

  it('fail/revoking an unknown UUID or serial is exit 65 and changes nothing', async () => {
    const work = tempDir();
    const pkiDir = join(work, 'pki');
    kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']);
    const db = `sqlite:${join(work, 'kiln.db')}`;
    const server = await startKilnctl(['--pki-dir', pkiDir, '--db', db]);
    try {
      const d = await register(server);
      const unknown = kilnctl(['devices', 'revoke', d.uuid, '00000000-0000-4000-8000-00000000dead', '--db', db]);
      expect(unknown.code).toBe(65);
      expect(unknown.stderr).toBe('kilnctl: device 00000000-0000-4000-8000-00000000dead has no certificate\n');
      expect(kilnctl(['devices', 'revoke', '--serial', 'abcdef', '--db', db]).stderr).toBe('kilnctl: no certificate with serial abcdef\n');
      const show = JSON.parse(kilnctl(['devices', 'show', d.uuid, '--db', db, '--json']).stdout) as {
        certificates: { revokedAt: string | null }[];
      };
      expect(show.certificates[0].revokedAt).toBeNull();
      expect(kilnctl(['devices', 'revoke', d.uuid, '--reason', 'stolen', '--db', db]).code).toBe(64);
    } finally {
      await server.stop();
    }
  });

  it('ok/--crl-url puts the CRL distribution point into new device certificates', async () => {
    const work = tempDir();
    const pkiDir = join(work, 'pki');
    kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']);
    const server = await startKilnctl([
      '--pki-dir',
      pkiDir,
      '--db',
      `sqlite:${join(work, 'kiln.db')}`,
      '--crl-url',
      'http://kiln.factory.lan:8000/crl',
    ]);
    try {
      const d = await register(server);
      writeFileSync(join(work, 'c.pem'), d.pem);
      const text = run('openssl', ['x509', '-in', join(work, 'c.pem'), '-noout', '-text']).stdout;
      expect(text).toMatch(/X509v3 CRL Distribution Points: \n\s+Full Name:\n\s+URI:http:\/\/kiln\.factory\.lan:8000\/crl/);
    } finally {
      await server.stop();
    }
  });
});
