// Devices that renew themselves (issue 18): `device-register renew` (Node.js) and the
// POSIX `kiln-renew` script (openssl + curl, under dash) against `kilnctl serve` over
// HTTPS; the old files stay untouched when the server fails mid-renewal; hooks run in
// order with the documented environment; the timer and service pass systemd-analyze.
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FACTORY, tempDir } from './helpers/pki.js';
import { kilnctl, ROOT, run, runAsync, systemdRoot, type Run } from './helpers/proc.js';
import { startSite, type Site } from './helpers/site.js';
import { makeSoftHsm, SOFTHSM_MODULE } from './helpers/softhsm.js';

const DEVICE_REGISTER = join(ROOT, 'bin/device-register');
const KILN_RENEW = join(ROOT, 'scripts/kiln-renew');

let site: Site;
let est: string;

/** A device registered over HTTPS by device-register; returns its sota directory. */
async function registeredDevice(extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ uuid: string; sota: string; dir: string }> {
  const dir = tempDir('kiln-renew-dev-');
  const sota = join(dir, 'sota');
  const uuid = randomUUID();
  writeFileSync(join(dir, 'os-release'), `LMP_FACTORY="${FACTORY}"\nLMP_MACHINE="intel-corei7-64"\n`);
  const r = await runAsync(
    DEVICE_REGISTER,
    [
      '--sota-dir',
      sota,
      '--uuid',
      uuid,
      '--os-release',
      join(dir, 'os-release'),
      '--start-daemon',
      '0',
      '--ca-file',
      join(site.pkiDir, 'factory_ca.pem'),
      ...extra,
    ],
    { env: { DEVICE_API: `${site.server.url}/sign`, ...env } },
  );
  expect(r.code, r.stderr).toBe(0);
  return { uuid, sota, dir };
}

const files = (sota: string): Record<string, string> =>
  Object.fromEntries(['client.pem', 'client.chained', 'pkey.pem', 'root.crt'].map((f) => [f, readFileSync(join(sota, f), 'utf8')]));

const verify = (sota: string): Run =>
  run('openssl', ['verify', '-CAfile', join(sota, 'root.crt'), '-untrusted', join(site.pkiDir, 'local-ca.pem'), join(sota, 'client.pem')]);

const serial = (pem: string): string =>
  run('sh', ['-c', `printf '%s' "$0" | openssl x509 -noout -serial`, pem]).stdout.trim().split('=')[1].toLowerCase();

const pubkey = (sota: string): string => run('openssl', ['pkey', '-in', join(sota, 'pkey.pem'), '-pubout']).stdout;
const certPubkey = (sota: string): string => run('openssl', ['x509', '-in', join(sota, 'client.pem'), '-noout', '-pubkey']).stdout;

function history(uuid: string): { serial: string; supersededBy: string | null }[] {
  return JSON.parse(kilnctl(['devices', 'show', uuid, '--db', site.db, '--json']).stdout).certificates;
}

/** Checks a renewal: a new certificate for a new key that verifies, the chain kept, the old one superseded. */
function expectRenewed(uuid: string, sota: string, before: Record<string, string>): void {
  const after = files(sota);
  expect(after['client.pem']).not.toBe(before['client.pem']);
  expect(after['pkey.pem']).not.toBe(before['pkey.pem']);
  expect(certPubkey(sota)).toBe(pubkey(sota));
  expect(verify(sota).stdout).toContain('OK');
  // client.chained: the new certificate, then the local CA as before
  const certs = (text: string): string[] => text.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  expect(certs(after['client.chained'])).toEqual([...certs(after['client.pem']), ...certs(before['client.chained']).slice(1)]);
  expect(certs(after['client.chained'])).toHaveLength(2);
  const h = history(uuid);
  expect(h.find((c) => c.serial === serial(before['client.pem']))?.supersededBy).toBe(serial(after['client.pem']));
}

/** A hooks directory: 10-record and 30-record append their name and environment; 20-fail exits 3. */
function hooksDir(dir: string): { dir: string; log: string } {
  const hooks = join(dir, 'hooks');
  const log = join(dir, 'hooks.log');
  mkdirSync(hooks);
  const record = (name: string): void => {
    writeFileSync(join(hooks, name), `#!/bin/sh\necho "${name} $KILN_EVENT $KILN_DEVICE_UUID $KILN_SOTA_DIR $KILN_SERIAL" >> "${log}"\n`);
    chmodSync(join(hooks, name), 0o755);
  };
  record('10-record');
  writeFileSync(join(hooks, '20-fail'), '#!/bin/sh\nexit 3\n');
  chmodSync(join(hooks, '20-fail'), 0o755);
  record('30-record');
  writeFileSync(join(hooks, '40-not-executable'), '#!/bin/sh\necho never >> /dev/null\n');
  return { dir: hooks, log };
}

/** A real HTTPS server with the site's certificate that reads a request and then drops the connection. */
async function dyingServer(): Promise<{ url: string; server: Server; requests: () => number }> {
  let n = 0;
  const server = createServer(
    {
      cert: readFileSync(join(site.pkiDir, 'server.pem')),
      key: readFileSync(join(site.pkiDir, 'server.key')),
      requestCert: true,
      rejectUnauthorized: false,
    },
    (req) => {
      req.on('data', () => undefined);
      req.on('end', () => {
        n++;
        req.socket.destroy();
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/est`, server, requests: () => n };
}

beforeAll(async () => {
  site = await startSite([], { tls: true });
  est = `${site.server.url}/.well-known/est`;
});

afterAll(async () => {
  await site?.server.stop();
});

describe('device-register renew', () => {
  it('ok/not due before two thirds of the lifetime: says when, changes nothing', async () => {
    const d = await registeredDevice();
    const before = files(d.sota);
    const r = await runAsync(DEVICE_REGISTER, ['renew', '--sota-dir', d.sota, '--est-url', est]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/is not due for renewal until \d{4}-/);
    expect(files(d.sota)).toEqual(before);
  });

  it('ok/--force renews with a new key; hooks run in order with the environment, a failing one does not undo it', async () => {
    const d = await registeredDevice();
    const hooks = hooksDir(d.dir);
    const before = files(d.sota);
    const r = await runAsync(DEVICE_REGISTER, ['renew', '--force', '--sota-dir', d.sota, '--est-url', est, '--hooks-dir', hooks.dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/renewed as [0-9a-f]+, valid until/);
    expectRenewed(d.uuid, d.sota, before);
    const s = serial(files(d.sota)['client.pem']);
    expect(readFileSync(hooks.log, 'utf8')).toBe(`10-record renew ${d.uuid} ${d.sota} ${s}\n30-record renew ${d.uuid} ${d.sota} ${s}\n`);
    expect(r.stderr).toMatch(/hook .*20-fail failed \(exit 3\); the renewal stands/);
    expect(existsSync(join(d.sota, '.kiln-renew.key'))).toBe(false);
  });

  it('ok/DEVICE_API gives the EST URL; --keep-key renews the same key', async () => {
    const d = await registeredDevice();
    const before = files(d.sota);
    const r = await runAsync(DEVICE_REGISTER, ['renew', '--force', '--keep-key', '--sota-dir', d.sota], {
      env: { DEVICE_API: `${site.server.url}/sign` },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(files(d.sota)['pkey.pem']).toBe(before['pkey.pem']);
    expect(files(d.sota)['client.pem']).not.toBe(before['client.pem']);
    expect(verify(d.sota).stdout).toContain('OK');
  });

  it('fail/a server that dies mid-renewal: exit 75, the old files untouched; the retry uses the kept key', async () => {
    const d = await registeredDevice();
    const before = files(d.sota);
    const dying = await dyingServer();
    try {
      const r = await runAsync(DEVICE_REGISTER, ['renew', '--force', '--sota-dir', d.sota, '--est-url', dying.url]);
      expect(r.code).toBe(75);
      expect(r.stderr).toMatch(/^device-register: cannot reach .*ECONNRESET/);
      expect(dying.requests()).toBe(1);
    } finally {
      dying.server.close();
    }
    expect(files(d.sota)).toEqual(before);
    const kept = readFileSync(join(d.sota, '.kiln-renew.key'), 'utf8');
    const r = await runAsync(DEVICE_REGISTER, ['renew', '--force', '--sota-dir', d.sota, '--est-url', est]);
    expect(r.code, r.stderr).toBe(0);
    expect(files(d.sota)['pkey.pem']).toBe(kept);
    expectRenewed(d.uuid, d.sota, before);
  });

  it('fail/a revoked certificate: exit 77 with the reason, files untouched', async () => {
    const d = await registeredDevice();
    expect(kilnctl(['devices', 'revoke', d.uuid, '--db', site.db]).code).toBe(0);
    const before = files(d.sota);
    const r = await runAsync(DEVICE_REGISTER, ['renew', '--force', '--sota-dir', d.sota, '--est-url', est]);
    expect(r.code).toBe(77);
    expect(r.stderr).toMatch(/renewal refused: HTTP 403: certificate [0-9a-f]+ was revoked \(unspecified\)/);
    expect(files(d.sota)).toEqual(before);
  });
});

describe('kiln-renew (sh: openssl + curl) under dash', () => {
  const renew = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> => runAsync('dash', [KILN_RENEW, ...args], { env });

  it('ok/not due: exit 0, nothing changed; --force renews with a new key and runs the hooks', async () => {
    const d = await registeredDevice();
    const before = files(d.sota);
    const notDue = await renew(['--sota-dir', d.sota, '--est-url', est]);
    expect(notDue.code, notDue.stderr).toBe(0);
    expect(notDue.stderr).toMatch(/not due: renewal at \d{4}-\d\d-\d\dT/);
    expect(files(d.sota)).toEqual(before);

    const hooks = hooksDir(d.dir);
    const r = await renew(['--force', '--sota-dir', d.sota, '--est-url', est], { KILN_HOOKS_DIR: hooks.dir });
    expect(r.code, r.stderr).toBe(0);
    expectRenewed(d.uuid, d.sota, before);
    const s = serial(files(d.sota)['client.pem']);
    expect(readFileSync(hooks.log, 'utf8')).toBe(`10-record renew ${d.uuid} ${d.sota} ${s}\n30-record renew ${d.uuid} ${d.sota} ${s}\n`);
    expect(r.stderr).toMatch(/hook .*20-fail failed \(exit 3\); the renewal stands/);
    expect(readdirSync(d.sota).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('ok/the EST URL from DEVICE_API in the configuration file', async () => {
    const d = await registeredDevice();
    const root = tempDir('kiln-renew-root-');
    mkdirSync(join(root, 'etc/kiln'), { recursive: true });
    writeFileSync(join(root, 'etc/kiln/device-register.conf'), `DEVICE_API=${site.server.url}/sign\n`);
    const before = files(d.sota);
    const r = await renew(['--force', '--sota-dir', d.sota], { KILN_ROOT: root });
    expect(r.code, r.stderr).toBe(0);
    expectRenewed(d.uuid, d.sota, before);
  });

  it('fail/a server that dies mid-renewal: exit 75, the old files untouched; the retry renews', async () => {
    const d = await registeredDevice();
    const before = files(d.sota);
    const dying = await dyingServer();
    try {
      const r = await renew(['--force', '--sota-dir', d.sota, '--est-url', dying.url]);
      expect(r.code).toBe(75);
      expect(r.stderr).toMatch(/^kiln-renew: cannot reach .*will retry$/m);
      expect(dying.requests()).toBe(1);
    } finally {
      dying.server.close();
    }
    expect(files(d.sota)).toEqual(before);
    const r = await renew(['--force', '--sota-dir', d.sota, '--est-url', est]);
    expect(r.code, r.stderr).toBe(0);
    expectRenewed(d.uuid, d.sota, before);
  });

  it('fail/a denied device: exit 77 with the reason, files untouched', async () => {
    const d = await registeredDevice();
    expect(kilnctl(['devices', 'deny', d.uuid, '--db', site.db]).code).toBe(0);
    const before = files(d.sota);
    const r = await renew(['--force', '--sota-dir', d.sota, '--est-url', est]);
    expect(r.code).toBe(77);
    expect(r.stderr).toContain(`renewal refused: HTTP 403: device ${d.uuid} is on the deny-list`);
    expect(files(d.sota)).toEqual(before);
  });
});

describe('kiln-renew with the device key in an HSM (SoftHSM2)', () => {
  it('ok/the key stays in the token; openssl and curl use it through the PKCS#11 engine; the new certificate goes into the token', async () => {
    const hsm = makeSoftHsm();
    const root = tempDir('kiln-renew-hsm-');
    mkdirSync(join(root, 'etc/sota'), { recursive: true });
    // this device's PINs, in the file the auto-register script makes (0600): never on a command line
    writeFileSync(join(root, 'etc/sota/hsm'), `HSM_MODULE=${SOFTHSM_MODULE}\n`);
    writeFileSync(join(root, 'etc/sota/hsm-pins'), 'HSM_PIN=87654321\nHSM_SOPIN=12345678\n', { mode: 0o600 });
    const d = await registeredDevice(['-m', SOFTHSM_MODULE, '--hsm-pins-file', join(root, 'etc/sota/hsm-pins')], hsm.env);
    expect(existsSync(join(d.sota, 'pkey.pem'))).toBe(false);
    const before = Object.fromEntries(['client.pem', 'client.chained'].map((f) => [f, readFileSync(join(d.sota, f), 'utf8')]));
    const r = await runAsync('dash', [KILN_RENEW, '--force', '--sota-dir', d.sota, '--est-url', est], {
      env: { ...hsm.env, KILN_ROOT: root, KILN_HOOKS_DIR: join(root, 'no-hooks') },
    });
    expect(r.code, r.stderr).toBe(0);
    const after = readFileSync(join(d.sota, 'client.pem'), 'utf8');
    expect(after).not.toBe(before['client.pem']);
    expect(verify(d.sota).stdout).toContain('OK');
    const pub = (pem: string): string => run('sh', ['-c', 'printf "%s" "$0" | openssl x509 -noout -pubkey', pem]).stdout;
    expect(pub(after)).toBe(pub(before['client.pem']));
    expect(history(d.uuid).find((c) => c.serial === serial(before['client.pem']))?.supersededBy).toBe(serial(after));
    // the token holds the new certificate under the contract's label and id
    const certs = hsm.inspect('aktualizr', '87654321').filter((o) => o.class === 'certificate');
    expect(certs.map((c) => [c.label, c.id])).toEqual([['client', '03']]);
    const der = after.replace(/-----[^-]+-----|\s/g, '');
    expect(certs[0].value).toBe(der);
    expect(readFileSync(join(d.sota, 'client.chained'), 'utf8').startsWith(after)).toBe(true);
  });
});

describe('registration hooks', () => {
  it('ok/device-register runs the hooks after registering, with KILN_EVENT=register', async () => {
    const dir = tempDir('kiln-hooks-');
    const hooks = hooksDir(dir);
    const d = await registeredDevice(['--hooks-dir', hooks.dir]);
    const s = serial(files(d.sota)['client.pem']);
    expect(readFileSync(hooks.log, 'utf8')).toBe(
      `10-record register ${d.uuid} ${d.sota} ${s}\n30-record register ${d.uuid} ${d.sota} ${s}\n`,
    );
  });
});

describe('kiln-renew.service and kiln-renew.timer', () => {
  it('ok/systemd-analyze verify passes on both, installed in a root with the script; shellcheck -s sh on the script', () => {
    const root = systemdRoot({
      'usr/bin/kiln-renew': KILN_RENEW,
      'etc/systemd/system/kiln-renew.service': join(ROOT, 'scripts/systemd/kiln-renew.service'),
      'etc/systemd/system/kiln-renew.timer': join(ROOT, 'scripts/systemd/kiln-renew.timer'),
    });
    const r = run('systemd-analyze', ['verify', `--root=${root}`, 'kiln-renew.timer', 'kiln-renew.service']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const timer = readFileSync(join(ROOT, 'scripts/systemd/kiln-renew.timer'), 'utf8');
    expect(timer).toMatch(/^RandomizedDelaySec=\d+h$/m);
    const sc = run('shellcheck', ['-s', 'sh', KILN_RENEW]);
    expect(sc.stdout + sc.stderr).toBe('');
  });
});
