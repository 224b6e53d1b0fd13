// The first-boot script under dash, its systemd unit, and shellcheck.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsrPem } from '../pki/csr.js';
import { nameValue } from '../pki/name.js';
import { OID } from '../pki/oids.js';
import { FACTORY, tempDir } from './helpers/pki.js';
import { kilnctl, ROOT, run, runAsync, startKilnctl, systemdRoot, type ServerProcess } from './helpers/proc.js';
import { startStandIn, type StandIn } from './helpers/stand-in.js';

const SCRIPT = join(ROOT, 'scripts/device-auto-register');
const UNIT = join(ROOT, 'scripts/systemd/device-auto-register.service');

interface Tree {
  root: string;
  sota: string;
  marker: string;
  boot: () => ReturnType<typeof runAsync>;
}

/** A fake / with the files an image ships. */
function fakeRoot(conf: Record<string, string>, extra: { token?: string; tag?: string; apps?: string[] } = {}): Tree {
  const root = tempDir('kiln-root-');
  mkdirSync(join(root, 'etc/kiln'), { recursive: true });
  mkdirSync(join(root, 'etc/sota'), { recursive: true });
  writeFileSync(
    join(root, 'etc/os-release'),
    'NAME="Linux-microPlatform"\nLMP_MACHINE="raspberrypi4-64"\nLMP_FACTORY="os-release-factory"\n',
  );
  writeFileSync(
    join(root, 'etc/kiln/device-register.conf'),
    Object.entries(conf)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
  );
  if (extra.token !== undefined) writeFileSync(join(root, 'etc/lmp-device-register-token'), extra.token + '\n', { mode: 0o600 });
  if (extra.tag !== undefined) writeFileSync(join(root, 'etc/sota/tag'), extra.tag);
  for (const app of extra.apps ?? []) mkdirSync(join(root, 'var/sota/compose-apps', app), { recursive: true });
  const marker = join(root, 'daemon-started');
  return {
    root,
    sota: join(root, 'var/sota'),
    marker,
    boot: () =>
      runAsync('dash', [SCRIPT], {
        env: {
          KILN_ROOT: root,
          KILN_DEVICE_REGISTER: join(ROOT, 'bin/device-register'),
          KILN_START_DAEMON_COMMAND: `echo started >> ${marker}`,
          PRODUCTION: undefined,
          DEVICE_API: undefined,
          DEVICE_FACTORY: undefined,
        },
      }),
  };
}

describe('static checks', () => {
  it('shellcheck -s sh passes on the auto-register script; shellcheck passes on the other scripts', () => {
    const sh = run('shellcheck', ['-s', 'sh', SCRIPT]);
    expect(sh.stdout + sh.stderr).toBe('');
    expect(sh.code).toBe(0);
    const bash = run('shellcheck', [
      join(ROOT, 'scripts/serve'),
      join(ROOT, 'scripts/test'),
      join(ROOT, '.ci/run'),
      join(ROOT, 'test/helpers/openssl-pki.sh'),
    ]);
    expect(bash.stdout + bash.stderr).toBe('');
  });

  it('systemd-analyze verify passes on the unit, installed in a root with the script', () => {
    const root = systemdRoot({ 'usr/bin/device-auto-register': SCRIPT, 'etc/systemd/system/device-auto-register.service': UNIT });
    const r = run('systemd-analyze', ['verify', `--root=${root}`, 'device-auto-register.service']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const unit = readFileSync(UNIT, 'utf8');
    expect(unit).toMatch(/^ConditionPathExists=!\/var\/sota\/sql.db$/m);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^RestartPreventExitStatus=64 65 69 77 78$/m);
    expect(unit).toMatch(/^StartLimitBurst=\d+$/m);
  });
});

describe('auto-register under dash against Kiln', () => {
  let server: ServerProcess;
  let db: string;
  beforeAll(async () => {
    const work = tempDir();
    db = `sqlite:${join(work, 'kiln.db')}`;
    kilnctl(['pki', 'init', '--dir', join(work, 'pki'), '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']);
    server = await startKilnctl(['--pki-dir', join(work, 'pki'), '--db', db]);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('registers the device on first boot, starts the daemon, and a second boot is a no-op success', async () => {
    const t = fakeRoot(
      { DEVICE_API: `${server.url}/sign`, PRODUCTION: '1', DEVICE_FACTORY: FACTORY },
      { token: 'na', tag: 'main', apps: ['shellhttpd', 'nginx'] },
    );
    const first = await t.boot();
    expect(first.stderr).not.toMatch(/failed/);
    expect(first.code).toBe(0);
    for (const f of ['client.pem', 'client.chained', 'root.crt', 'sota.toml', 'pkey.pem'])
      expect(existsSync(join(t.sota, f)), f).toBe(true);
    const toml = readFileSync(join(t.sota, 'sota.toml'), 'utf8');
    expect(toml).toContain('primary_ecu_hardware_id = "raspberrypi4-64"');
    expect(toml).toContain('tags = "main"');
    expect(toml).toMatch(/compose_apps = "(nginx,shellhttpd|shellhttpd,nginx)"/);
    const v = run('openssl', [
      'verify',
      '-CAfile',
      join(t.sota, 'root.crt'),
      '-untrusted',
      join(t.sota, 'client.chained'),
      join(t.sota, 'client.pem'),
    ]);
    expect(v.stdout).toMatch(/OK/);
    const devices = JSON.parse(kilnctl(['devices', 'list', '--db', db, '--json']).stdout) as { production: boolean; hardwareId: string }[];
    expect(devices.find((d) => d.hardwareId === 'raspberrypi4-64')).toMatchObject({ production: true });
    expect(readFileSync(t.marker, 'utf8')).toBe('started\n');

    // reboot before aktualizr-lite made sql.db: the unit runs again
    const pem = readFileSync(join(t.sota, 'client.pem'), 'utf8');
    const second = await t.boot();
    expect(second.code).toBe(0);
    expect(second.stderr).toMatch(/already registered/);
    expect(readFileSync(join(t.sota, 'client.pem'), 'utf8')).toBe(pem);
    expect(readFileSync(t.marker, 'utf8')).toBe('started\nstarted\n');
  });

  it('fails with 78 when the image ships no DEVICE_API', async () => {
    const t = fakeRoot({ PRODUCTION: '1' });
    const r = await t.boot();
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/no DEVICE_API/);
  });
});

describe('auto-register under dash against a manual lot', () => {
  it('retries a pending device, says an operator must approve, and succeeds after approval', async () => {
    const work = tempDir();
    const db = `sqlite:${join(work, 'kiln.db')}`;
    kilnctl(['pki', 'init', '--dir', join(work, 'pki'), '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']);
    const server = await startKilnctl(['--pki-dir', join(work, 'pki'), '--db', db, '--enrollment', 'token']);
    try {
      const tokenFile = join(work, 'token');
      expect(kilnctl(['lots', 'create', 'line-7', '--approval', 'manual', '--token-out', tokenFile, '--db', db]).code).toBe(0);
      const t = fakeRoot(
        { DEVICE_API: `${server.url}/sign`, DEVICE_FACTORY: FACTORY, START_DAEMON: '0', RETRY_DELAY: '1', RETRY_ATTEMPTS: '6' },
        { token: readFileSync(tokenFile, 'utf8').trim() },
      );
      let done = false;
      const booting = t.boot().finally(() => (done = true));
      // the operator sees the request and approves it while the script retries
      let approved = '';
      for (let i = 0; i < 100 && !approved && !done; i++) {
        const pending = JSON.parse(kilnctl(['approvals', 'list', '--db', db, '--json']).stdout) as { uuid: string }[];
        if (pending.length) {
          expect(kilnctl(['approvals', 'approve', pending[0].uuid, '--db', db]).code).toBe(0);
          approved = pending[0].uuid;
        } else await new Promise((r) => setTimeout(r, 100));
      }
      const r = await booting;
      expect(approved).not.toBe('');
      expect(r.stderr).toMatch(/this device awaits approval: an operator must approve it on the registration server/);
      expect(r.code).toBe(0);
      expect(existsSync(join(t.sota, 'client.pem'))).toBe(true);
      const devices = JSON.parse(kilnctl(['devices', 'list', '--db', db, '--json']).stdout) as { uuid: string }[];
      expect(devices.map((d) => d.uuid)).toEqual([approved]);
    } finally {
      await server.stop();
    }
  });
});

describe('auto-register with an HSM and USE_HOSTNAME (stub client)', () => {
  /** A stand-in for the client: records its arguments. */
  const stubbed = (conf: Record<string, string>, hsm: string) => {
    const t = fakeRoot({ DEVICE_API: 'http://kiln:8000/sign', CLIENT_FLAVOR: 'lmp', START_DAEMON: '0', ...conf }, { token: 'tok' });
    writeFileSync(join(t.root, 'etc/sota/hsm'), hsm);
    writeFileSync(join(t.root, 'etc/hostname'), 'line3-station7\n');
    const stub = join(t.root, 'lmp-device-register');
    writeFileSync(stub, `#!/bin/sh\nprintf '%s\\n' "$@" > ${t.root}/args\n`, { mode: 0o755 });
    const boot = async () => {
      const r = await runAsync('dash', [SCRIPT], { env: { KILN_ROOT: t.root, KILN_DEVICE_REGISTER: stub, USE_HOSTNAME: undefined } });
      return { ...r, args: readFileSync(join(t.root, 'args'), 'utf8').trim().split('\n') };
    };
    return { t, boot };
  };
  const after = (args: string[], flag: string): string => args[args.indexOf(flag) + 1];

  it('each device makes its own HSM PINs once (0600) and keeps them; no two devices share one', async () => {
    const a = stubbed({}, 'HSM_MODULE=/usr/lib/softhsm/libsofthsm2.so\n');
    const b = stubbed({}, 'HSM_MODULE=/usr/lib/softhsm/libsofthsm2.so\n');
    const first = await a.boot();
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/generated this device's HSM PINs in .*\/etc\/sota\/hsm-pins \(mode 0600\)/);
    expect(after(first.args, '-m')).toBe('/usr/lib/softhsm/libsofthsm2.so');
    const pin = after(first.args, '-P');
    const so = after(first.args, '-S');
    expect(pin).toMatch(/^\d{8,16}$/);
    expect(so).toMatch(/^\d{8,16}$/);
    expect(so).not.toBe(pin);
    const pins = join(a.t.root, 'etc/sota/hsm-pins');
    expect(statSync(pins).mode & 0o777).toBe(0o600);
    expect(readFileSync(pins, 'utf8')).toBe(`HSM_PIN=${pin}\nHSM_SOPIN=${so}\n`);
    const again = await a.boot();
    expect(after(again.args, '-P')).toBe(pin);
    expect(again.stderr).not.toMatch(/generated/);
    expect(after((await b.boot()).args, '-P')).not.toBe(pin);
  });

  it('PINs a factory station wrote into /etc/sota/hsm win; nothing is generated', async () => {
    const s = stubbed({}, 'HSM_MODULE=/m.so\nHSM_PIN=1111\nHSM_SOPIN=2222\n');
    const r = await s.boot();
    expect([after(r.args, '-P'), after(r.args, '-S')]).toEqual(['1111', '2222']);
    expect(existsSync(join(s.t.root, 'etc/sota/hsm-pins'))).toBe(false);
  });

  it("USE_HOSTNAME (conf or the stock unit's environment) names the device after /etc/hostname", async () => {
    const s = stubbed({ USE_HOSTNAME: '1' }, '');
    expect(after((await s.boot()).args, '-n')).toBe('line3-station7');
    const none = stubbed({}, '');
    expect((await none.boot()).args).not.toContain('-n');
  });
});

describe('auto-register driving the stock lmp-device-register (CLIENT_FLAVOR=lmp)', () => {
  it('passes the token with -T and no Kiln-only options', async () => {
    const t = fakeRoot({ DEVICE_API: 'http://kiln:8000/sign', CLIENT_FLAVOR: 'lmp', START_DAEMON: '0' }, { token: 'tok-123' });
    // a stand-in for the C++ binary: records its arguments and environment
    const stub = join(t.root, 'lmp-device-register');
    writeFileSync(stub, `#!/bin/sh\nprintf '%s\\n' "$@" > ${t.root}/args\nenv > ${t.root}/env\n`, { mode: 0o755 });
    const r = await runAsync('dash', [SCRIPT], { env: { KILN_ROOT: t.root, KILN_DEVICE_REGISTER: stub, DEVICE_API: undefined } });
    expect(r.code).toBe(0);
    const args = readFileSync(join(t.root, 'args'), 'utf8').trim().split('\n');
    expect(args).toEqual(['-d', t.sota, '--start-daemon', '0', '-T', 'tok-123']);
    expect(readFileSync(join(t.root, 'env'), 'utf8')).toMatch(/^DEVICE_API=http:\/\/kiln:8000\/sign$/m);
  });
});

describe('auto-register under dash against a stand-in', () => {
  let s: StandIn;
  beforeAll(async () => {
    s = await startStandIn();
  });
  afterAll(async () => {
    await s.close();
  });
  const files = JSON.stringify({ 'root.crt': 'R\n', 'client.pem': 'C\n', 'client.chained': 'C\n\nL\n', 'sota.toml': '[tls]\n' });

  it('exports the configuration to the client: token from the file, PRODUCTION, DEVICE_FACTORY, group', async () => {
    s.seen.length = 0;
    s.answer(() => ({ status: 201, body: files }));
    const t = fakeRoot(
      { DEVICE_API: s.url, PRODUCTION: 'yes', DEVICE_FACTORY: 'from-conf', DEVICE_GROUP: 'line-3', START_DAEMON: '0' },
      { token: 's3cret-token' },
    );
    const r = await t.boot();
    expect(r.code).toBe(0);
    const post = s.seen.find((x) => x.method === 'POST')!;
    expect(post.headers['osf-token']).toBe('s3cret-token');
    const body = JSON.parse(post.body) as { csr: string; group: string };
    expect(body.group).toBe('line-3');
    const csr = parseCsrPem(body.csr);
    expect(nameValue(csr.subject, OID.organizationalUnit)).toBe('from-conf');
    expect(nameValue(csr.subject, OID.businessCategory)).toBe('production');
    expect(existsSync(t.marker)).toBe(false);
    expect(r.stderr).not.toContain('s3cret-token');
  });

  it('retries exit 75 with back-off, then succeeds', async () => {
    s.seen.length = 0;
    let posts = 0;
    s.answer(() => (++posts < 3 ? { status: 503, body: 'busy', contentType: 'text/plain' } : { status: 201, body: files }));
    const t = fakeRoot({ DEVICE_API: s.url, RETRY_DELAY: '0', START_DAEMON: '0' });
    const r = await t.boot();
    expect(r.code).toBe(0);
    expect(posts).toBe(3);
    expect(r.stderr.match(/retrying in 0s/g)).toHaveLength(2);
  });

  it('gives up after RETRY_ATTEMPTS with exit 75 (systemd restarts it later); a refusal is not retried', async () => {
    let posts = 0;
    s.answer(() => (posts++, { status: 503, body: 'busy', contentType: 'text/plain' }));
    const t = fakeRoot({ DEVICE_API: s.url, RETRY_DELAY: '0', RETRY_ATTEMPTS: '3', START_DAEMON: '0' });
    const r = await t.boot();
    expect(r.code).toBe(75);
    expect(posts).toBe(3);
    expect(existsSync(join(t.sota, 'client.pem'))).toBe(false);

    posts = 0;
    s.answer(() => (posts++, { status: 403, body: 'denied', contentType: 'text/plain' }));
    const denied = await fakeRoot({ DEVICE_API: s.url, RETRY_DELAY: '0', START_DAEMON: '0' }).boot();
    expect(denied.code).toBe(77);
    expect(posts).toBe(1);
  });
});
