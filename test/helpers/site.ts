// A Kiln site for end-to-end tests: a fresh PKI and registry, `kilnctl serve` on them,
// and a device registered the way lmp-device-register does it.
import { join } from 'node:path';
import { expect } from 'vitest';
import { deviceCsr, FACTORY, lmpBody, tempDir } from './pki.js';
import { kilnctl, startKilnctl, type ServerProcess } from './proc.js';

export interface Site {
  server: ServerProcess;
  work: string;
  pkiDir: string;
  /** the registry, as a --db value */
  db: string;
}

/**
 * `kilnctl pki init` in a temp dir, then `kilnctl serve` with `args` on it; with `tls`,
 * over HTTPS with the PKI's own server certificate (for 127.0.0.1 and localhost).
 */
export async function startSite(args: string[] = [], opts: { tls?: boolean } = {}): Promise<Site> {
  const work = tempDir();
  const pkiDir = join(work, 'pki');
  const db = `sqlite:${join(work, 'kiln.db')}`;
  const server = opts.tls ? ['--server-dns', 'localhost', '--server-ip', '127.0.0.1'] : [];
  expect(kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test', ...server]).code).toBe(0);
  const tls = opts.tls ? ['--tls-cert', join(pkiDir, 'server.pem'), '--tls-key', join(pkiDir, 'server.key')] : [];
  return { server: await startKilnctl(['--pki-dir', pkiDir, '--db', db, ...tls, ...args]), work, pkiDir, db };
}

/** POST /sign of a new device; expects 201 and returns its UUID and certificate. */
export async function registerAt(server: ServerProcess): Promise<{ uuid: string; pem: string }> {
  const d = await deviceCsr();
  const res = await fetch(`${server.url}/sign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: lmpBody({ csr: d.csrPem, uuid: d.uuid }),
  });
  expect(res.status).toBe(201);
  return { uuid: d.uuid, pem: ((await res.json()) as Record<string, string>)['client.pem'] };
}
