// The first hour with Kiln (issue 13): the usual mistakes of a new operator, each with
// one helpful line and the sysexits code the README promises, and nothing that kills a
// running server or hangs.
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../server/db/sqlite/store.js';
import { VERSION } from '../pki/version.js';
import { deviceCsr, FACTORY, lmpBody, tempDir } from './helpers/pki.js';
import { kilnctl, kilnctlAsync, ROOT, run, runAsync, startKilnctl, type ServerProcess } from './helpers/proc.js';
import { startStandIn } from './helpers/stand-in.js';

const isRoot = process.getuid?.() === 0;
/** Runs a command as `nobody`, so the system refuses what root may do. */
const asNobody = (cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
  run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', cmd, ...args], { env });

function newPki(dir: string, factory = FACTORY): void {
  const r = kilnctl(['pki', 'init', '--dir', dir, '--factory', factory, '--gateway-dns', 'gw.acme.test']);
  expect(r.code).toBe(0);
}

async function register(url: string): Promise<number> {
  const d = await deviceCsr();
  const res = await request(`${url}/sign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: lmpBody({ csr: d.csrPem, uuid: d.uuid }),
  });
  await res.body.text();
  return res.statusCode;
}

describe('a running server survives a build next to it', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    const work = tempDir();
    newPki(join(work, 'pki'));
    server = await startKilnctl(['--pki-dir', join(work, 'pki'), '--db', `sqlite:${join(work, 'kiln.db')}`]);
  });
  afterAll(async () => {
    await server.stop();
  });

  it('ok/the addons it has loaded are replaced by rename, not rewritten in place', async () => {
    expect(await register(server.url)).toBe(201);
    // make dist/'s addons differ from the fresh build, so the build must put new files there
    // (appending leaves the running server's mapping intact; rewriting in place would not)
    for (const a of ['kiln_ecdsa', 'kiln_walbuf']) appendFileSync(join(ROOT, `dist/${a}.node`), Buffer.from([0]));
    const build = await runAsync(process.execPath, [join(ROOT, 'scripts/build.mjs')]);
    expect(build.code).toBe(0);
    for (const a of ['kiln_ecdsa', 'kiln_walbuf'])
      expect(readFileSync(join(ROOT, `dist/${a}.node`)).equals(readFileSync(join(ROOT, `native/build/Release/${a}.node`)))).toBe(true);
    for (let i = 0; i < 20; i++) expect(await register(server.url)).toBe(201);
    expect(server.logs()).not.toMatch(/SIGSEGV|SIGBUS/);
  });
});

describe('system errors: one sentence and the sysexits code', () => {
  it('fail/pki init under /proc returns at once: cannot create, 73', () => {
    const started = Date.now();
    const r = kilnctl(['pki', 'init', '--dir', '/proc/nope', '--factory', 'acme', '--gateway-dns', 'gw.acme.test']);
    expect(Date.now() - started).toBeLessThan(20_000); // it used to spin for minutes
    expect(r.code).toBe(73);
    expect(r.stderr).toBe('kilnctl: cannot create /proc/nope: no such file or directory\n');
  });

  it.each([
    ['a file in the way', (f: string) => f, 'something of that name is in the way'],
    ['a file on the path', (f: string) => join(f, 'pki'), 'a part of the path is not a directory'],
  ])('fail/pki init with %s: 73 and what is wrong', (_n, dirOf, sentence) => {
    const file = join(tempDir(), 'plain');
    writeFileSync(file, 'x');
    const dir = dirOf(file);
    const r = kilnctl(['pki', 'init', '--dir', dir, '--factory', 'acme', '--gateway-dns', 'gw.acme.test']);
    expect(r.code).toBe(73);
    expect(r.stderr).toBe(`kilnctl: cannot create ${dir}: ${sentence}\n`);
  });

  it.runIf(isRoot)('fail/pki init where the user may not write: permission denied, 77', () => {
    const parent = tempDir();
    chmodSync(parent, 0o755);
    const r = asNobody(join(ROOT, 'bin/kilnctl'), [
      'pki',
      'init',
      '--dir',
      join(parent, 'pki'),
      '--factory',
      'acme',
      '--gateway-dns',
      'gw.test',
    ]);
    expect(r.code).toBe(77);
    expect(r.stderr).toBe(`kilnctl: cannot create ${join(parent, 'pki')}: permission denied\n`);
  });

  it.runIf(isRoot)('fail/devices deny on a registry the user may not write: 77, and nothing changed', async () => {
    const work = tempDir();
    chmodSync(work, 0o755);
    const path = join(work, 'kiln.db');
    await openSqliteStore(path).close();
    chmodSync(path, 0o644);
    const uuid = '00000000-0000-4000-8000-000000000077';
    const r = asNobody(join(ROOT, 'bin/kilnctl'), ['devices', 'deny', uuid, '--db', `sqlite:${path}`]);
    expect(r.code).toBe(77);
    expect(r.stderr).toBe(
      `kilnctl: the registry ${path} is read-only to this user: run as the server's user (the file and its directory must be writable)\n`,
    );
    expect(JSON.parse(kilnctl(['devices', 'list-denied', '--db', `sqlite:${path}`, '--json']).stdout)).toEqual([]);
  });

  it('fail/an admin command on a missing registry: 66, and no file is created', () => {
    const path = join(tempDir(), 'wrong', 'kiln.db');
    const r = kilnctl(['devices', 'deny', '00000000-0000-4000-8000-000000000001', '--db', `sqlite:${path}`]);
    expect(r.code).toBe(66);
    expect(r.stderr).toMatch(/^kilnctl: no registry at .*wrong\/kiln\.db \(check --db or KILN_DB/);
    expect(existsSync(join(path, '..'))).toBe(false);
  });
});

describe('the admin commands read the server configuration', () => {
  it('ok/KILN_CONFIG gives devices commands the registry: not ./data/kiln.db', async () => {
    const work = tempDir();
    const path = join(work, 'site.db');
    await openSqliteStore(path).close();
    const uuid = '00000000-0000-4000-8000-000000000042';
    expect(kilnctl(['devices', 'deny', uuid, '--db', `sqlite:${path}`]).code).toBe(0);
    writeFileSync(join(work, 'kiln.json'), JSON.stringify({ db: `sqlite:${path}` }));
    const cwd = tempDir(); // no ./data/kiln.db here
    const viaEnv = kilnctl(['devices', 'list-denied', '--json'], { cwd, env: { KILN_CONFIG: join(work, 'kiln.json') } });
    expect(viaEnv.stderr).toBe('');
    expect((JSON.parse(viaEnv.stdout) as { uuid: string }[]).map((d) => d.uuid)).toEqual([uuid]);
    const viaFlag = kilnctl(['devices', 'list-denied', '--json', '--config', join(work, 'kiln.json')], { cwd });
    expect((JSON.parse(viaFlag.stdout) as { uuid: string }[]).map((d) => d.uuid)).toEqual([uuid]);
    const viaDb = kilnctl(['upstream', 'status', '--json'], { cwd, env: { KILN_DB: `sqlite:${path}` } });
    expect(viaDb.code).toBe(0);
  });

  it('ok/devices sync-denied takes the factory (and upstream) from the config file', async () => {
    const up = await startStandIn();
    try {
      up.answer((req) =>
        req.method === 'GET' ? { status: 200, body: JSON.stringify({ 'denied-devices': [] }) } : { status: 404, body: 'no' },
      );
      const work = tempDir();
      newPki(join(work, 'pki'), 'site-factory');
      const path = join(work, 'kiln.db');
      await openSqliteStore(path).close();
      writeFileSync(join(work, 'token'), 'tok\n', { mode: 0o600 });
      writeFileSync(
        join(work, 'kiln.json'),
        JSON.stringify({ db: `sqlite:${path}`, pkiDir: join(work, 'pki'), upstreamApi: up.url, upstreamTokenFile: join(work, 'token') }),
      );
      const cwd = tempDir();
      mkdirSync(join(cwd, 'data'));
      newPki(join(cwd, 'data', 'pki'), 'another-factory'); // the default ./data/pki must not be read
      const r = await kilnctlAsync(['devices', 'sync-denied', '--config', join(work, 'kiln.json')], { cwd });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(up.seen.map((s) => new URL(s.url, 'http://x').pathname)).toEqual(['/ota/factories/site-factory/denied-devices/']);
    } finally {
      await up.close();
    }
  });
});

describe('usage mistakes', () => {
  it('fail/kilnctl with no command prints help and exits 64', () => {
    const r = kilnctl([]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^Usage: kilnctl/);
    expect(r.stderr).toMatch(/kilnctl: name a command\n$/);
  });

  it.each([
    ['--factory', 'acme/../x'],
    ['--factory', 'ac me'],
    ['--factory', 'OU=x,CN=y'],
    ['--factory', ''],
    ['--owner', 'a"b'],
    ['--owner', '-x'],
  ])('fail/pki init %s %j is a usage error (64) and writes nothing', (flag, value) => {
    const dir = join(tempDir(), 'pki');
    const args = ['pki', 'init', '--dir', dir, '--factory', 'acme', '--gateway-dns', 'gw.acme.test'];
    const r = kilnctl(flag === '--factory' ? args.map((a, i) => (args[i - 1] === '--factory' ? value : a)) : [...args, `${flag}=${value}`]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(new RegExp(`^kilnctl: ${flag} .*: use 1-64 letters, digits`));
    expect(existsSync(dir)).toBe(false);
  });

  it('ok/--version everywhere names the package version', () => {
    expect(kilnctl(['--version']).stdout).toBe(`${VERSION}\n`);
    expect(run(join(ROOT, 'bin/device-register'), ['--version']).stdout).toBe(`device-register ${VERSION}\n`);
  });

  it('ok/serve --help lists every environment variable and the exit codes', () => {
    const help = kilnctl(['serve', '--help']).stdout;
    for (const v of ['KILN_CONFIG', 'KILN_DB', 'KILN_PKI_DIR', 'KILN_LOG_LEVEL', 'KILN_UPSTREAM_API', 'KILN_UPSTREAM_MODE'])
      expect(help).toContain(v);
    expect(help).toMatch(/Exit codes \(sysexits\): 0 ok, 64 usage/);
    expect(kilnctl(['devices', 'list', '--help']).stdout).toContain('KILN_CONFIG');
    const dr = run(join(ROOT, 'bin/device-register'), ['--help']).stdout;
    expect(dr).toContain('DEVICE_API (default https://api.foundries.io/ota/devices/)');
    expect(dr).toMatch(/Exit codes: 0 registered, 64 usage/);
  });
});

describe('the start-up line and the log level', () => {
  it('ok/names the version, enrollment and upstream modes; --log-level warn drops the request lines', async () => {
    const work = tempDir();
    newPki(join(work, 'pki'));
    const server = await startKilnctl(['--pki-dir', join(work, 'pki'), '--db', `sqlite:${join(work, 'kiln.db')}`], {
      KILN_LOG_LEVEL: 'warn',
    });
    try {
      expect(await register(server.url)).toBe(201);
      await new Promise((r) => setTimeout(r, 200));
      const lines = server
        .logs()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines[0]).toMatchObject({
        event: 'started',
        level: 'notice',
        version: VERSION,
        enrollment: 'open',
        upstream: 'detached',
        log_level: 'warn',
      });
      expect(lines.filter((l) => l.event === 'request')).toEqual([]);
      // open enrollment is the reference's behaviour, and the server says so at start
      expect(lines.find((l) => l.event === 'enrollment_open')).toMatchObject({ level: 'warn' });
    } finally {
      await server.stop();
    }
  });
});

describe('device-register without DEVICE_API', () => {
  it('fail/says which URL it used and how to set another', () => {
    const dir = tempDir('kiln-device-');
    const sota = join(dir, 'sota');
    mkdirSync(sota);
    writeFileSync(join(sota, 'client.pem'), 'old');
    writeFileSync(join(dir, 'os-release'), `LMP_FACTORY="${FACTORY}"\nLMP_MACHINE="m"\n`);
    const r = run(join(ROOT, 'bin/device-register'), ['--os-release', join(dir, 'os-release'), '-d', sota, '--start-daemon', '0'], {
      env: { DEVICE_API: '' },
    });
    expect(r.code).toBe(65);
    const note =
      'DEVICE_API is not set, so the default https://api.foundries.io/ota/devices/ was used; for a factory server set DEVICE_API=http://<kiln-host>:8000/sign';
    expect(r.stderr.split('\n')[0]).toBe(`device-register: ${note}`);
  });
});
