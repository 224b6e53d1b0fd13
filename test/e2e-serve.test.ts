// End to end: kilnctl as real processes, a real SQLite file, real HTTP, real openssl.
import { createHash, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceCsr, FACTORY, lmpBody, tempDir } from './helpers/pki.js';
import { kilnctl, opensslVerify, ROOT, run, startKilnctl, type ServerProcess } from './helpers/proc.js';

async function register(url: string, body: string): Promise<{ status: number; text: string }> {
  // lmp-device-register checks reachability with HEAD first, then POSTs
  const head = await request(`${url}/sign`, { method: 'HEAD' });
  await head.body.dump();
  expect(head.statusCode).toBeLessThan(500);
  const res = await request(`${url}/sign`, { method: 'POST', headers: { 'content-type': 'application/json', 'osf-token': 'na' }, body });
  return { status: res.statusCode, text: await res.body.text() };
}

function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [k, v] of Object.entries(files)) writeFileSync(join(dir, k), v);
}

describe('kilnctl pki init / show', () => {
  it('creates a fioctl-layout PKI that openssl verifies, keys 0600, and refuses to overwrite', () => {
    const dir = join(tempDir(), 'pki');
    const r = kilnctl([
      'pki',
      'init',
      '--dir',
      dir,
      '--factory',
      FACTORY,
      '--gateway-dns',
      'gw.acme.test',
      '--ostree-dns',
      'ostree.acme.test',
      '--owner',
      'owner-9',
    ]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['factory_ca.key', 'factory_ca.pem', 'local-ca.key', 'local-ca.pem', 'tls-crt', 'tls.key']);
    for (const k of ['factory_ca.key', 'local-ca.key', 'tls.key']) expect(statSync(join(dir, k)).mode & 0o777).toBe(0o600);
    const v = run('openssl', ['verify', '-CAfile', join(dir, 'factory_ca.pem'), join(dir, 'local-ca.pem'), join(dir, 'tls-crt')]);
    expect(v.stdout).toContain('local-ca.pem: OK');
    expect(v.stdout).toContain('tls-crt: OK');

    const text = (f: string): string =>
      run('openssl', ['x509', '-in', join(dir, f), '-noout', '-text', '-nameopt', 'utf8,sep_comma_plus_space,show_type']).stdout;
    const root = text('factory_ca.pem');
    expect(root).toMatch(/Subject: CN=UTF8STRING:Factory-CA, OU=UTF8STRING:acme-factory/);
    expect(root).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(root).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(root).toContain('ASN1 OID: prime256v1');
    const local = text('local-ca.pem');
    expect(local).toMatch(/Subject: CN=UTF8STRING:owner-9, OU=UTF8STRING:acme-factory/);
    expect(local).toMatch(/CA:TRUE, pathlen:0/);
    expect(local).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
    const tls = text('tls-crt');
    expect(tls).toMatch(/DNS:gw.acme.test, DNS:ostree.acme.test/);
    expect(tls).toMatch(/Key Usage: critical\s+Digital Signature/);
    expect(tls).toMatch(/TLS Web Server Authentication/);
    const days = (f: string): number => {
      const out = run('openssl', ['x509', '-in', join(dir, f), '-noout', '-startdate', '-enddate']).stdout;
      const [s, e] = [...out.matchAll(/=(.*)/g)].map((m) => Date.parse(m[1]));
      return Math.round((e - s) / 86_400_000);
    };
    expect([days('factory_ca.pem'), days('local-ca.pem'), days('tls-crt')]).toEqual([7300, 3650, 3650]);

    const show = kilnctl(['pki', 'show', '--dir', dir, '--json']);
    expect(show.code).toBe(0);
    const info = JSON.parse(show.stdout) as { factory: string; certificates: { file: string; dnsNames: string[] }[] };
    expect(info.factory).toBe(FACTORY);
    expect(info.certificates.find((c) => c.file === 'tls-crt')?.dnsNames).toEqual(['gw.acme.test', 'ostree.acme.test']);

    const again = kilnctl(['pki', 'init', '--dir', dir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']);
    expect(again.code).toBe(65);
    expect(again.stderr.trim()).toMatch(/^kilnctl: .* already holds a PKI .*refusing to overwrite$/);
  });

  it('fail/bad arguments are usage errors (64) with one line', () => {
    const r = kilnctl(['pki', 'init', '--dir', join(tempDir(), 'p'), '--factory', 'f', '--gateway-dns', 'not a host']);
    expect(r.code).toBe(64);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(kilnctl(['pki', 'init', '--dir', join(tempDir(), 'p')]).code).toBe(64);
  });
});

describe('kilnctl serve, end to end', () => {
  let pkiDir: string;
  let db: string;
  let server: ServerProcess;
  let work: string;

  beforeAll(async () => {
    work = tempDir();
    pkiDir = join(work, 'pki');
    db = `sqlite:${join(work, 'kiln.db')}`;
    expect(
      kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test', '--ostree-dns', 'ostree.acme.test'])
        .code,
    ).toBe(0);
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', db]);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('registers a device with an lmp-device-register body; openssl verifies the chain', async () => {
    const { uuid, csrPem } = await deviceCsr({ production: true });
    const res = await register(server.url, lmpBody({ csr: csrPem, uuid }));
    expect(res.status).toBe(201);
    // the built server verifies CSRs with the native addon and buffers its WAL writes, and says so once at start
    const started = server
      .logs()
      .split('\n')
      .find((l) => l.includes('"event":"started"'));
    expect(JSON.parse(started!)).toMatchObject({ ecdsa: 'native', verify_and_sign: true, wal_buffer: true, key: 'file', db: 'sqlite' });
    const files = JSON.parse(res.text) as Record<string, string>;
    const dev = join(work, uuid);
    run('mkdir', ['-p', dev]);
    writeFiles(dev, files);
    expect(opensslVerify(join(dev, 'root.crt'), join(pkiDir, 'local-ca.pem'), join(dev, 'client.pem')).stdout.trim()).toMatch(
      /client.pem: OK$/,
    );
    // client.chained carries the local CA: the device can present the chain by itself
    const chained = run('openssl', [
      'verify',
      '-CAfile',
      join(dev, 'root.crt'),
      '-untrusted',
      join(dev, 'client.chained'),
      join(dev, 'client.pem'),
    ]);
    expect(chained.stdout).toMatch(/OK/);
    const purpose = run('openssl', [
      'verify',
      '-purpose',
      'sslclient',
      '-CAfile',
      join(dev, 'root.crt'),
      '-untrusted',
      join(pkiDir, 'local-ca.pem'),
      join(dev, 'client.pem'),
    ]);
    expect(purpose.stdout).toMatch(/OK/);
    expect(files['sota.toml']).toContain('server = "https://gw.acme.test:8443"');
    expect(files['sota.toml']).toContain('ostree_server = "https://ostree.acme.test:8443/ostree"');

    // the server writes a turn's log lines after the turn: the answer can arrive first
    const requestLine = (): string | undefined =>
      server
        .logs()
        .split('\n')
        .find((l) => l.includes(uuid) && l.includes('"status":201'));
    for (let i = 0; i < 100 && !requestLine(); i++) await new Promise((r) => setTimeout(r, 20));
    const logs = server.logs();
    const line = requestLine();
    expect(line && JSON.parse(line)).toMatchObject({ event: 'request', uuid, client: '127.0.0.1' });
    expect(logs).not.toContain('BEGIN');

    const list = kilnctl(['devices', 'list', '--db', db, '--json']);
    expect(list.code).toBe(0);
    expect((JSON.parse(list.stdout) as { uuid: string; production: boolean }[]).find((d) => d.uuid === uuid)).toMatchObject({
      production: true,
    });
    const show = kilnctl(['devices', 'show', uuid, '--db', db]);
    expect(show.stdout).toContain(`UUID:        ${uuid}`);
    expect(show.stdout).toContain('Production:  true');
  });

  it('delete denies the device: /sign answers 403 until delete-denied', async () => {
    const { uuid, csrPem } = await deviceCsr();
    expect((await register(server.url, lmpBody({ csr: csrPem, uuid }))).status).toBe(201);

    const del = kilnctl(['devices', 'delete', uuid, '--db', db, '--json']);
    expect(del.code).toBe(0);
    expect(JSON.parse(del.stdout)).toMatchObject({ deleted: [uuid], revoked: [{ uuid, reason: 'cessationOfOperation' }] });
    const refused = await register(server.url, lmpBody({ csr: csrPem, uuid }));
    expect(refused.status).toBe(403);
    expect(refused.text).toBe(`device ${uuid} is on the deny-list\n`);

    const denied = JSON.parse(kilnctl(['devices', 'list-denied', '--db', db, '--json']).stdout) as { uuid: string; reason: string }[];
    expect(denied.find((d) => d.uuid === uuid)).toMatchObject({ reason: 'deleted' });
    expect(kilnctl(['devices', 'list-denied', '--db', db]).stdout).toContain(uuid);

    expect(kilnctl(['devices', 'delete-denied', uuid, '--db', db]).code).toBe(0);
    expect((await register(server.url, lmpBody({ csr: csrPem, uuid }))).status).toBe(201);
  });

  it('deny works for UUIDs never seen; errors exit non-zero with one line', async () => {
    const uuid = randomUUID();
    expect(kilnctl(['devices', 'deny', uuid, '--reason', 'lost in transit', '--db', db]).code).toBe(0);
    const { csrPem } = await deviceCsr({ uuid });
    expect((await register(server.url, lmpBody({ csr: csrPem, uuid }))).status).toBe(403);

    const unknown = randomUUID();
    for (const args of [
      ['devices', 'show', unknown],
      ['devices', 'delete', unknown],
      ['devices', 'delete-denied', unknown],
    ]) {
      const r = kilnctl([...args, '--db', db]);
      expect(r.code, args.join(' ')).toBe(65);
      expect(r.stderr.trim()).toMatch(new RegExp(`^kilnctl: .*${unknown}$`));
    }
    const bad = kilnctl(['devices', 'deny', 'not-a-uuid', '--db', db]);
    expect(bad.code).toBe(64);
    expect(bad.stderr.trim()).toBe('kilnctl: "not-a-uuid" is not a device UUID');
  });
});

describe('durability', () => {
  it('every 201 is already committed: kill -9 right after the answers loses nothing', async () => {
    const work = tempDir();
    kilnctl(['pki', 'init', '--dir', join(work, 'pki'), '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']);
    const db = `sqlite:${join(work, 'kiln.db')}`;
    const server = await startKilnctl(['--pki-dir', join(work, 'pki'), '--db', db]);
    const devices = await Promise.all(Array.from({ length: 20 }, () => deviceCsr()));
    const answers = await Promise.all(devices.map((d) => register(server.url, lmpBody({ csr: d.csrPem, uuid: d.uuid }))));
    expect(answers.map((a) => a.status)).toEqual(devices.map(() => 201));
    expect(await server.stop('SIGKILL')).toBeNull();
    const listed = JSON.parse(kilnctl(['devices', 'list', '--db', db, '--json']).stdout) as { uuid: string; serial: string }[];
    for (const [i, d] of devices.entries()) {
      const clientPem = (JSON.parse(answers[i].text) as Record<string, string>)['client.pem'];
      const serial = run('openssl', ['x509', '-noout', '-serial'], { input: clientPem }).stdout.trim().replace('serial=', '').toLowerCase();
      expect(listed.find((l) => l.uuid === d.uuid)?.serial, d.uuid).toBe(serial.replace(/^(00)+/, ''));
    }
  });
});

describe('kilnctl serve start-up failures', () => {
  it('fail/missing PKI directory: exit 78, one line', async () => {
    const r = kilnctl([
      'serve',
      '--pki-dir',
      join(tempDir(), 'none'),
      '--db',
      `sqlite:${join(tempDir(), 'k.db')}`,
      '--listen',
      '127.0.0.1:0',
    ]);
    expect(r.code).toBe(78);
    expect(r.stderr.trim()).toMatch(
      /^kilnctl: cannot read CA key .*: no such file or directory \(.* holds no PKI: create one with kilnctl pki init --dir /,
    );
  });

  it('fail/port in use: exit 69', async () => {
    const work = tempDir();
    kilnctl(['pki', 'init', '--dir', join(work, 'pki'), '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']);
    const first = await startKilnctl(['--pki-dir', join(work, 'pki'), '--db', `sqlite:${join(work, 'a.db')}`]);
    try {
      const r = kilnctl([
        'serve',
        '--pki-dir',
        join(work, 'pki'),
        '--db',
        `sqlite:${join(work, 'b.db')}`,
        '--listen',
        first.url.replace('http://', ''),
      ]);
      expect(r.code).toBe(69);
      expect(r.stderr.trim()).toMatch(/^kilnctl: cannot listen on 127.0.0.1:\d+: EADDRINUSE$/);
    } finally {
      await first.stop();
    }
  });
});

describe('adopting a PKI made by plain openssl (fioctl layout)', () => {
  it('serves from it unchanged and its devices verify', async () => {
    const work = tempDir();
    const dir = join(work, 'pki');
    const made = run('sh', [join(ROOT, 'test/helpers/openssl-pki.sh'), dir, 'openssl-factory', 'gw.example.test', 'ostree.example.test']);
    expect(made.code, made.stderr).toBe(0);
    const snapshot = (): string[] =>
      readdirSync(dir)
        .sort()
        .map(
          (f) =>
            `${f} ${(statSync(join(dir, f)).mode & 0o777).toString(8)} ${createHash('sha256')
              .update(readFileSync(join(dir, f)))
              .digest('hex')}`,
        );
    const before = snapshot();

    const server = await startKilnctl(['--pki-dir', dir, '--db', `sqlite:${join(work, 'kiln.db')}`]);
    try {
      const { uuid, csrPem } = await deviceCsr({ factory: 'openssl-factory' });
      const res = await register(server.url, lmpBody({ csr: csrPem, uuid }));
      expect(res.status).toBe(201);
      const files = JSON.parse(res.text) as Record<string, string>;
      writeFiles(work, files);
      expect(opensslVerify(join(dir, 'factory_ca.pem'), join(dir, 'local-ca.pem'), join(work, 'client.pem')).stdout).toMatch(/OK/);
      expect(files['sota.toml']).toContain('server = "https://gw.example.test:8443"');
      expect((await register(server.url, lmpBody({ csr: (await deviceCsr()).csrPem, uuid: randomUUID() }))).status).toBe(400);
    } finally {
      await server.stop();
    }
    expect(snapshot()).toEqual(before);
    expect(before.every((l) => l.split(' ')[1] === '400')).toBe(true);
  });
});
