// HTTPS (issue 17): `pki init --server-dns/--server-ip` issues Kiln's own server
// certificate, `serve --tls-cert/--tls-key` serves TLS 1.2+, and device-register verifies
// it against the CA file it is given.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FACTORY, tempDir } from './helpers/pki.js';
import { freePort, kilnctl, KILNCTL, ROOT, runAsync } from './helpers/proc.js';

describe('HTTPS', () => {
  let work: string;
  let pkiDir: string;
  let port: number;
  let stop: () => Promise<void>;
  let logs = '';
  beforeAll(async () => {
    work = tempDir();
    pkiDir = join(work, 'pki');
    const init = kilnctl([
      'pki',
      'init',
      '--dir',
      pkiDir,
      '--factory',
      FACTORY,
      '--gateway-dns',
      'gw.acme.test',
      '--server-dns',
      'localhost',
      '--server-ip',
      '127.0.0.1',
      '::1',
    ]);
    expect(init.stderr).not.toMatch(/kilnctl:/);
    port = await freePort();
    const admin = await freePort();
    const child = spawn(
      KILNCTL,
      [
        'serve',
        '--pki-dir',
        pkiDir,
        '--db',
        `sqlite:${join(work, 'kiln.db')}`,
        '--listen',
        `127.0.0.1:${port}`,
        '--admin-listen',
        `127.0.0.1:${admin}`,
        '--tls-cert',
        join(pkiDir, 'server.pem'),
        '--tls-key',
        join(pkiDir, 'server.key'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout.on('data', (d: Buffer) => (logs += d.toString()));
    child.stderr.on('data', (d: Buffer) => (logs += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    stop = async () => {
      child.kill('SIGTERM');
      await exited;
    };
    for (let i = 0; i < 100 && !logs.includes('"event":"started"'); i++) {
      if (child.exitCode !== null) throw new Error(logs);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  afterAll(async () => {
    await stop();
  });

  it('ok/pki init issues server.pem (serverAuth, DNS and IP SANs) and a 0600 server.key', () => {
    expect(statSync(join(pkiDir, 'server.key')).mode & 0o777).toBe(0o600);
    const text = spawnText('openssl', ['x509', '-in', join(pkiDir, 'server.pem'), '-noout', '-text']);
    expect(text).toMatch(/DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/);
    expect(text).toContain('TLS Web Server Authentication');
  });

  it('ok/the server says https in its start-up line and answers over TLS, verified against the factory root', async () => {
    expect(logs).toContain(`"url":"https://127.0.0.1:${port}"`);
    const body = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/healthz', ca: readFileSync(join(pkiDir, 'factory_ca.pem')) }, (res) => {
        let s = '';
        res.on('data', (d: Buffer) => (s += d.toString()));
        res.on('end', () => resolve(s));
      });
      req.on('error', reject);
      req.end();
    });
    expect(JSON.parse(body)).toMatchObject({ status: 'ok' });
  });

  it('fail/TLS 1.1 is refused', async () => {
    const err = await new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port, maxVersion: 'TLSv1.1', minVersion: 'TLSv1', rejectUnauthorized: false }, () =>
        resolve('connected'),
      );
      s.on('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message));
    });
    expect(err).not.toBe('connected');
  });

  it('ok/device-register registers over HTTPS with --ca-file; without it, the certificate is not trusted', async () => {
    const dir = tempDir('kiln-device-');
    writeFileSync(join(dir, 'os-release'), `LMP_FACTORY="${FACTORY}"\nLMP_MACHINE="imx8mm-lpddr4-evk"\n`);
    const reg = (extra: string[], sota: string) =>
      runAsync(
        join(ROOT, 'bin/device-register'),
        ['--os-release', join(dir, 'os-release'), '-d', join(dir, sota), '--start-daemon', '0', ...extra],
        {
          env: { DEVICE_API: `https://127.0.0.1:${port}/sign` },
        },
      );
    const untrusted = await reg([], 'a');
    expect(untrusted.code).toBe(75);
    expect(untrusted.stderr).toMatch(
      /cannot reach https:\/\/127\.0\.0\.1:\d+\/sign: (SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)/,
    );
    const ok = await reg(['--ca-file', join(pkiDir, 'factory_ca.pem')], 'b');
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(readFileSync(join(dir, 'b', 'client.pem'), 'utf8')).toContain('BEGIN CERTIFICATE');
  });
});

const spawnText = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });
