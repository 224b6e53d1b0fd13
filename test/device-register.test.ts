// device-register as a real process against a stand-in server and against Kiln.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseCsrPem } from '../pki/csr.js';
import { encodeName } from '../pki/name.js';
import { OID } from '../pki/oids.js';
import { FACTORY, tempDir } from './helpers/pki.js';
import { kilnctl, ROOT, run, runAsync, startKilnctl, type Run, type ServerProcess } from './helpers/proc.js';
import { startStandIn, type StandIn } from './helpers/stand-in.js';

const BIN = join(ROOT, 'bin/device-register');
const UUID = '6a1f0c2e-5b4d-4e3f-8a9b-0c1d2e3f4a5b';

function osRelease(dir: string, factory = FACTORY): string {
  const path = join(dir, 'os-release');
  writeFileSync(path, `NAME="Linux-microPlatform"\nLMP_FACTORY="${factory}"\nLMP_FACTORY_TAG="main"\nLMP_MACHINE="intel-corei7-64"\n`);
  return path;
}

interface Device {
  dir: string;
  sota: string;
  register: (args: string[], env?: NodeJS.ProcessEnv) => Promise<Run>;
  snapshot: () => Record<string, string>;
}

function device(api: string): Device {
  const dir = tempDir('kiln-device-');
  const sota = join(dir, 'var/sota');
  const osr = osRelease(dir);
  return {
    dir,
    sota,
    register: (args, env = {}) =>
      runAsync(BIN, ['--os-release', osr, '-d', sota, '--start-daemon', '0', ...args], {
        env: { DEVICE_API: api, PRODUCTION: undefined, ...env },
      }),
    snapshot: () =>
      existsSync(sota)
        ? Object.fromEntries(
            readdirSync(sota).map((f) => [f, statSync(join(sota, f)).isFile() ? readFileSync(join(sota, f), 'utf8') : '<dir>']),
          )
        : { '<none>': '' },
  };
}

const FILES = { 'root.crt': 'ROOT\n', 'client.pem': 'CLIENT\n', 'client.chained': 'CLIENT\n\nCA\n', 'sota.toml': '[tls]\n' };

describe('device-register against a stand-in server', () => {
  let s: StandIn;
  beforeAll(async () => {
    s = await startStandIn();
  });
  afterAll(async () => {
    await s.close();
  });
  beforeEach(() => {
    s.seen.length = 0;
    s.answer(() => ({ status: 201, body: JSON.stringify(FILES) }));
  });

  it('sends HEAD, then a POST shaped exactly like lmp-device-register, and writes the files', async () => {
    const d = device(s.url);
    const r = await d.register(['-u', UUID, '-T', 'secret-token', '-a', 'shellhttpd', '-p']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(s.seen.map((x) => x.method)).toEqual(['HEAD', 'POST']);
    const post = s.seen[1];
    expect(post.url).toBe('/sign');
    expect(post.headers['content-type']).toBe('application/json');
    expect(post.headers['osf-token']).toBe('secret-token');
    expect(post.body).toContain('"sota-config-dir":"' + d.sota.replace(/\//g, '\\/') + '"');
    const body = JSON.parse(post.body) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['hardware-id', 'uuid', 'name', 'csr', 'sota-config-dir', 'use-ostree-server', 'overrides']);
    expect(body).toMatchObject({
      'hardware-id': 'intel-corei7-64',
      uuid: UUID,
      name: UUID,
      'sota-config-dir': d.sota,
      'use-ostree-server': 'false',
    });
    expect(body.overrides).toEqual({
      pacman: {
        type: '"ostree+compose_apps"',
        compose_apps_root: `"${d.sota}/compose-apps"`,
        compose_apps: '"shellhttpd"',
        reset_apps_root: `"${d.sota}/reset-apps"`,
        reset_apps: '" "',
        tags: '"main"',
      },
    });

    // the CSR: exact subject bytes (UTF8String CN, OU, businessCategory) and critical extension requests
    const csr = parseCsrPem(body.csr as string);
    expect(
      csr.subjectDer.equals(
        encodeName([
          { oid: OID.commonName, value: UUID },
          { oid: OID.organizationalUnit, value: FACTORY },
          { oid: OID.businessCategory, value: 'production' },
        ]),
      ),
    ).toBe(true);
    expect(csr.subjectDer.includes(Buffer.from([0x0c, UUID.length]))).toBe(true);
    expect(csr.keyInfo).toEqual({ type: 'ec', curve: 'prime256v1' });
    expect(csr.signatureAlgorithm).toBe(OID.ecdsaSha256);
    expect(csr.requestedExtensions.get(OID.keyUsage)).toEqual({ critical: true, value: Buffer.from('03020780', 'hex') });
    expect(csr.requestedExtensions.get(OID.extKeyUsage)).toEqual({ critical: true, value: Buffer.from('300a06082b06010505070302', 'hex') });

    expect(d.snapshot()).toMatchObject(FILES);
    expect(statSync(join(d.sota, 'pkey.pem')).mode & 0o777).toBe(0o600);
    // the key written is the key the CSR carries
    const pub = run('openssl', ['pkey', '-in', join(d.sota, 'pkey.pem'), '-pubout', '-outform', 'DER']);
    expect(pub.code).toBe(0);
    expect(readdirSync(d.sota).sort()).toEqual(['client.chained', 'client.pem', 'pkey.pem', 'root.crt', 'sota.toml']);
  });

  it('sends -g as group and a custom token header', async () => {
    const d = device(s.url);
    expect((await d.register(['-g', 'beta', '-H', 'X-Kiln-Token', '-T', 't'])).code).toBe(0);
    expect(JSON.parse(s.seen[1].body)).toMatchObject({ group: 'beta' });
    expect(s.seen[1].headers['x-kiln-token']).toBe('t');
  });

  it.each([
    ['../evil', { '../evil': 'x' }],
    ['a/b', { 'a/b': 'x' }],
    ['empty', { '': 'x' }],
    ['dot-dot', { '..': 'x' }],
    ['NUL', { 'a\u0000b': 'x' }],
    ['pkey.pem', { 'pkey.pem': 'attacker key' }],
  ])('fail/malicious response key %s: exit 65, nothing written', async (_n, extra) => {
    s.answer(() => ({ status: 201, body: JSON.stringify({ ...FILES, ...extra }) }));
    const d = device(s.url);
    const r = await d.register([]);
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/^device-register: refusing unsafe file name from server/);
    expect(existsSync(d.sota)).toBe(false);
    expect(existsSync(join(d.dir, 'evil'))).toBe(false);
  });

  it.each([
    [400, 'csr OU "x" is not this factory', 65],
    [409, 'device already registered', 65],
    [401, 'bad token', 77],
    [403, 'device 1 is on the deny-list', 77],
  ])('fail/HTTP %s prints the reason and exits %s; the sota dir is left as it was', async (status, reason, code) => {
    s.answer(() => ({ status, body: reason + '\n', contentType: 'text/plain' }));
    const d = device(s.url);
    mkdirSync(d.sota, { recursive: true });
    writeFileSync(join(d.sota, 'sota.toml'), 'old config\n');
    const before = d.snapshot();
    const r = await d.register([]);
    expect(r.code).toBe(code);
    expect(r.stderr).toBe(`device-register: registration refused: HTTP ${status}: ${reason}\n`);
    expect(d.snapshot()).toEqual(before);
  });

  it.each([
    [500, 'internal error'],
    [503, 'registry unavailable'],
    [429, 'slow down'],
  ])('fail/HTTP %s is temporary, not a refusal: exit 75 and says try again', async (status, reason) => {
    s.answer(() => ({ status, body: reason + '\n', contentType: 'text/plain' }));
    const d = device(s.url);
    const before = d.snapshot();
    const r = await d.register([]);
    expect(r.code).toBe(75);
    expect(r.stderr).toBe(`device-register: server temporarily unavailable, try again later: HTTP ${status}: ${reason}\n`);
    expect(d.snapshot()).toEqual(before);
  });

  it('fail/a created sota dir is removed again on a refusal', async () => {
    s.answer(() => ({ status: 400, body: 'no', contentType: 'text/plain' }));
    const d = device(s.url);
    expect((await d.register([])).code).toBe(65);
    expect(existsSync(d.sota)).toBe(false);
  });

  it('fail/network errors exit 75: connection refused, dropped connection, timeout', async () => {
    const d = device('http://127.0.0.1:1/sign');
    const refused = await d.register([]);
    expect(refused.code).toBe(75);
    expect(refused.stderr).toMatch(/cannot reach http:\/\/127.0.0.1:1\/sign: ECONNREFUSED/);
    s.answer(() => 'drop');
    expect((await device(s.url).register([])).code).toBe(75);
    s.answer(() => 'hang');
    const hung = await device(s.url).register(['--timeout', '1']);
    expect(hung.code).toBe(75);
    expect(hung.stderr).toMatch(/ETIMEDOUT/);
  });

  it('fail/a failure mid-way through writing leaves no partial file and restores what was there', async () => {
    const d = device(s.url);
    mkdirSync(join(d.sota, 'sota.toml', 'blocker'), { recursive: true }); // rename onto a non-empty dir fails
    writeFileSync(join(d.sota, 'root.crt'), 'previous root\n');
    const before = d.snapshot();
    const r = await d.register([]);
    expect(r.code).toBe(74);
    expect(r.stderr).toMatch(/cannot move the device files into/);
    expect(d.snapshot()).toEqual(before);
  });

  it('refuses a registered device unless --force 1, which replaces the files', async () => {
    const d = device(s.url);
    expect((await d.register([])).code).toBe(0);
    const again = await d.register([]);
    expect(again.code).toBe(65);
    expect(again.stderr).toMatch(/registered already .* use --force 1/);
    writeFileSync(join(d.sota, 'sql.db'), '');
    expect((await d.register(['--force', '0'])).code).toBe(65);
    s.answer(() => ({ status: 201, body: JSON.stringify({ ...FILES, 'client.pem': 'NEW\n' }) }));
    expect((await d.register(['--force', '1'])).code).toBe(0);
    expect(readFileSync(join(d.sota, 'client.pem'), 'utf8')).toBe('NEW\n');
    expect(readdirSync(d.sota).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('starts the daemon only with --start-daemon 1 (the default)', async () => {
    const d = device(s.url);
    const marker = join(d.dir, 'daemon-started');
    const osr = join(d.dir, 'os-release');
    const go = (extra: string[], sota: string): Promise<Run> =>
      runAsync(BIN, ['--os-release', osr, '-d', sota, '--start-daemon-command', `touch ${marker}`, ...extra], {
        env: { DEVICE_API: s.url },
      });
    expect((await go(['--start-daemon', '0'], join(d.dir, 'a'))).code).toBe(0);
    expect(existsSync(marker)).toBe(false);
    expect((await go([], join(d.dir, 'b'))).code).toBe(0);
    expect(existsSync(marker)).toBe(true);
    const failing = await runAsync(BIN, ['--os-release', osr, '-d', join(d.dir, 'c'), '--start-daemon-command', 'exit 3'], {
      env: { DEVICE_API: s.url },
    });
    expect(failing.code).toBe(69);
    expect(failing.stderr).toMatch(/registered, but "exit 3" failed/);
  });

  it('SIGTERM while waiting for the server leaves the sota dir as it was', async () => {
    s.answer(() => 'hang');
    const d = device(s.url);
    mkdirSync(d.sota, { recursive: true });
    writeFileSync(join(d.sota, 'keep'), 'x');
    const before = d.snapshot();
    const child = spawn(BIN, ['--os-release', join(d.dir, 'os-release'), '-d', d.sota, '--start-daemon', '0'], {
      env: { ...process.env, DEVICE_API: s.url },
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    while (s.seen.filter((x) => x.method === 'POST').length === 0) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.once('exit', (c) => r(c)));
    expect(code).toBe(143);
    expect(stderr).toMatch(/interrupted by SIGTERM/);
    expect(d.snapshot()).toEqual(before);
  });

  it('usage errors exit 64', async () => {
    const r = run(BIN, ['--bogus']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe('device-register: unknown option --bogus\n');
    expect(run(BIN, ['--help']).stdout).toMatch(/--start-daemon/);
  });
});

describe('device-register bundle', () => {
  it('is one file that loads only node: built-ins (pkcs11js lazily), and runs outside the checkout', async () => {
    const bundle = readFileSync(join(ROOT, 'dist/device-register.js'), 'utf8');
    const imports = [...bundle.matchAll(/(?:from\s*|import\s*\(?\s*|require\()\s*["']([^"']+)["']/g)].map((m) => m[1]);
    expect(imports.length).toBeGreaterThan(0);
    // pkcs11js is the one exception: imported dynamically, only in HSM mode (-m)
    expect(imports.filter((i) => !i.startsWith('node:'))).toEqual(['pkcs11js']);
    expect(bundle).toMatch(/import\(\s*["']pkcs11js["']\s*\)/);
    const alone = tempDir();
    copyFileSync(join(ROOT, 'dist/device-register.js'), join(alone, 'device-register.mjs'));
    const r = run(process.execPath, [join(alone, 'device-register.mjs'), '--version'], { cwd: alone });
    expect(r.stdout).toBe('device-register 0.1.0\n');
  });
});

describe('device-register against Kiln', () => {
  let server: ServerProcess;
  let pkiDir: string;
  beforeAll(async () => {
    const work = tempDir();
    pkiDir = join(work, 'pki');
    kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test', '--ostree-dns', 'ostree.acme.test']);
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${join(work, 'kiln.db')}`]);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('registers; the certificate verifies and matches pkey.pem; the registry has the device', async () => {
    const d = device(`${server.url}/sign`);
    const r = await d.register(['-T', 'na', '-n', 'line-3-board-7'], { PRODUCTION: '1' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const v = run('openssl', [
      'verify',
      '-CAfile',
      join(d.sota, 'root.crt'),
      '-untrusted',
      join(d.sota, 'client.chained'),
      join(d.sota, 'client.pem'),
    ]);
    expect(v.stdout).toMatch(/OK/);
    const certKey = run('openssl', ['x509', '-in', join(d.sota, 'client.pem'), '-noout', '-pubkey']).stdout;
    const fileKey = run('openssl', ['pkey', '-in', join(d.sota, 'pkey.pem'), '-pubout']).stdout;
    expect(certKey).toBe(fileKey);
    const subject = run('openssl', ['x509', '-in', join(d.sota, 'client.pem'), '-noout', '-subject', '-nameopt', 'RFC2253']).stdout;
    expect(subject).toMatch(new RegExp(`businessCategory=production,OU=${FACTORY},CN=[0-9a-f-]{36}`));
    expect(readFileSync(join(d.sota, 'sota.toml'), 'utf8')).toContain(`tls_pkey_path = "${d.sota}/pkey.pem"`);
    const uuid = /CN=([0-9a-f-]{36})/.exec(subject)![1];
    const shown = JSON.parse(kilnctl(['devices', 'show', uuid, '--db', `sqlite:${join(pkiDir, '../kiln.db')}`, '--json']).stdout) as {
      device: { name: string; production: boolean };
    };
    expect(shown.device).toMatchObject({ name: 'line-3-board-7', production: true });
  });

  it('a wrong factory is refused with the server reason and exit 65', async () => {
    const d = device(`${server.url}/sign`);
    const r = await d.register(['-f', 'other-factory']);
    expect(r.code).toBe(65);
    expect(r.stderr).toBe(`device-register: registration refused: HTTP 400: csr OU "other-factory" is not this factory (${FACTORY})\n`);
    expect(existsSync(d.sota)).toBe(false);
  });
});
