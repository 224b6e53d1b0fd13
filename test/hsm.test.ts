// PKCS#11 end to end with SoftHSM2: the CA key in one token, the device key in another.
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceCsr, FACTORY, lmpBody, tempDir } from './helpers/pki.js';
import { kilnctl, ROOT, run, runAsync, startKilnctl, type ServerProcess } from './helpers/proc.js';
import { makeSoftHsm, SOFTHSM_MODULE, uriFor, type SoftHsm } from './helpers/softhsm.js';

const DEVICE_REGISTER = join(ROOT, 'bin/device-register');

describe('CA key in SoftHSM2, device key in SoftHSM2', () => {
  let caHsm: SoftHsm;
  let uri: string;
  let work: string;
  let pkiDir: string;
  let server: ServerProcess;

  beforeAll(async () => {
    caHsm = makeSoftHsm();
    caHsm.initToken('kiln-ca', '1234', '5678');
    uri = uriFor('kiln-ca', 'local-ca', caHsm.pinFile('1234'));
    work = tempDir();
    pkiDir = join(work, 'pki');
    const init = kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test', '--ca-key', uri], {
      env: caHsm.env,
    });
    expect(init.stderr).not.toMatch(/kilnctl:/);
    expect(init.stderr).toContain(
      'Keep factory_ca.key offline: the server needs only the local CA key in pkcs11:token=kiln-ca;object=local-ca.',
    );
    expect(init.code).toBe(0);
    server = await startKilnctl(['--pki-dir', pkiDir, '--ca-key', uri, '--db', `sqlite:${join(work, 'kiln.db')}`], caHsm.env);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('pki init keeps the local CA key in the token: no key file, non-extractable, chain verifies', () => {
    expect(existsSync(join(pkiDir, 'local-ca.key'))).toBe(false);
    expect(existsSync(join(pkiDir, 'factory_ca.key'))).toBe(true);
    expect(run('openssl', ['verify', '-CAfile', join(pkiDir, 'factory_ca.pem'), join(pkiDir, 'local-ca.pem')]).stdout).toMatch(/OK/);
    const key = caHsm.inspect('kiln-ca', '1234').find((o) => o.class === 'private' && o.label === 'local-ca');
    expect(key).toMatchObject({ sensitive: true, extractable: false });
    const again = kilnctl(
      ['pki', 'init', '--dir', join(work, 'pki2'), '--factory', FACTORY, '--gateway-dns', 'gw.acme.test', '--ca-key', uri],
      { env: caHsm.env },
    );
    expect(again.code).toBe(65);
    expect(again.stderr).toMatch(/already holds a private key labelled "local-ca"/);
  });

  it('pki init with both keys in the token mentions no factory_ca.key; pki show says where the CA key is', () => {
    const dir = join(work, 'pki-both');
    const rootUri = uriFor('kiln-ca', 'root-ca-2', caHsm.pinFile('1234'));
    const caUri = uriFor('kiln-ca', 'local-ca-2', caHsm.pinFile('1234'));
    const init = kilnctl(
      ['pki', 'init', '--dir', dir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test', '--root-key', rootUri, '--ca-key', caUri],
      { env: caHsm.env },
    );
    expect(init.code).toBe(0);
    expect(existsSync(join(dir, 'factory_ca.key'))).toBe(false);
    expect(init.stderr).not.toContain('factory_ca.key');
    expect(init.stderr).toContain('The root CA key stays in pkcs11:token=kiln-ca;object=root-ca-2');

    const show = kilnctl(['pki', 'show', '--dir', dir], { env: { ...caHsm.env, KILN_CA_KEY: caUri } });
    expect(show.code).toBe(0);
    expect(show.stdout).toContain('local-ca.key: in an HSM: pkcs11:token=kiln-ca;object=local-ca-2\n');
    expect(show.stdout).not.toContain('pin-source');
    const plain = kilnctl(['pki', 'show', '--dir', dir], { env: caHsm.env });
    expect(plain.stdout).toContain('local-ca.key: not in this directory: kilnctl serve needs it, or --ca-key pkcs11:');
  });

  it('/healthz reports the PKCS#11 backend; the token and object only on the admin listener', async () => {
    const h = await request(`${server.url}/healthz`);
    expect(await h.body.json()).toMatchObject({ status: 'ok', key: { backend: 'pkcs11', state: 'ready' } });
    const text = await (await request(`${server.url}/healthz`)).body.text();
    expect(text).not.toContain('kiln-ca');
    const token = join(tempDir(), 'admin.token');
    const made = kilnctl(
      ['admin-tokens', 'create', 'ops', '--role', 'viewer', '--token-out', token, '--db', `sqlite:${join(work, 'kiln.db')}`],
      { env: caHsm.env },
    );
    expect(made.code, made.stderr).toBe(0);
    const ready = await request(`${server.adminUrl}/api/v1/readyz`, {
      headers: { authorization: `Bearer ${readFileSync(token, 'utf8').trim()}` },
    });
    const body = (await ready.body.json()) as { checks: { name: string; ok: boolean; detail: string }[] };
    const key = body.checks.find((c) => c.name === 'ca_key')!;
    expect(key.ok).toBe(true);
    expect(key.detail).toContain('"token":"kiln-ca"');
  });

  it('a device with its key in another token registers; objects are as the contract says', async () => {
    const devHsm = makeSoftHsm();
    const dir = tempDir();
    const sota = join(dir, 'sota');
    writeFileSync(join(dir, 'os-release'), `LMP_FACTORY="${FACTORY}"\nLMP_MACHINE="imx8mm-lpddr4-evk"\n`);
    const args = [
      '--os-release',
      join(dir, 'os-release'),
      '-d',
      sota,
      '--start-daemon',
      '0',
      '-m',
      SOFTHSM_MODULE,
      '-P',
      '87654321',
      '-S',
      '12345678',
    ];
    const env = { ...devHsm.env, DEVICE_API: `${server.url}/sign` };
    const r = await runAsync(DEVICE_REGISTER, args, { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);

    expect(existsSync(join(sota, 'pkey.pem'))).toBe(false);
    const toml = readFileSync(join(sota, 'sota.toml'), 'utf8');
    expect(toml).toContain(
      '[tls]\nserver = "https://gw.acme.test:8443"\nca_source = "file"\npkey_source = "pkcs11"\ncert_source = "pkcs11"\n',
    );
    expect(toml).toContain(
      '[import]\ntls_cacert_path = "' + sota + '/root.crt"\n# tls_pkey_path is not set\n# tls_clientcert_path is not set\n',
    );
    expect(toml.endsWith(`\n[p11]\nmodule = "${SOFTHSM_MODULE}"\npass = "87654321"\ntls_pkey_id = "01"\ntls_clientcert_id = "03"\n`)).toBe(
      true,
    );
    expect(
      run('openssl', ['verify', '-CAfile', join(sota, 'root.crt'), '-untrusted', join(sota, 'client.chained'), join(sota, 'client.pem')])
        .stdout,
    ).toMatch(/OK/);

    const objects = devHsm.inspect('aktualizr', '87654321');
    const key = objects.filter((o) => o.class === 'private');
    expect(key).toEqual([{ class: 'private', label: 'tls', id: '01', sensitive: true, extractable: false }]);
    const certs = objects.filter((o) => o.class === 'certificate');
    expect(certs).toHaveLength(1);
    expect(certs[0]).toMatchObject({ label: 'client', id: '03' });
    expect(Buffer.from(certs[0].value!, 'base64').equals(new X509Certificate(readFileSync(join(sota, 'client.pem'))).raw)).toBe(true);

    // registered: refused without --force; --force 1 replaces the stale objects
    const again = await runAsync(DEVICE_REGISTER, [...args, '-d', join(dir, 'sota2')], { env });
    expect(again.code).toBe(65);
    expect(again.stderr).toMatch(/already holds a "tls" key or "client" certificate; use --force 1/);
    const forced = await runAsync(DEVICE_REGISTER, [...args, '-d', join(dir, 'sota3'), '--force', '1'], { env });
    expect(forced.code).toBe(0);
    const after = devHsm.inspect('aktualizr', '87654321');
    expect(after.filter((o) => o.class === 'private')).toHaveLength(1);
    expect(after.filter((o) => o.class === 'certificate')).toHaveLength(1);
    expect(after.find((o) => o.class === 'certificate')!.value).not.toBe(certs[0].value);
  });

  it('a refused registration removes the objects it created', async () => {
    const devHsm = makeSoftHsm();
    const dir = tempDir();
    writeFileSync(join(dir, 'os-release'), `LMP_FACTORY="other-factory"\nLMP_MACHINE="m"\n`);
    const r = await runAsync(
      DEVICE_REGISTER,
      [
        '--os-release',
        join(dir, 'os-release'),
        '-d',
        join(dir, 'sota'),
        '--start-daemon',
        '0',
        '-m',
        SOFTHSM_MODULE,
        '-P',
        '1111',
        '-S',
        '2222',
      ],
      {
        env: { ...devHsm.env, DEVICE_API: `${server.url}/sign` },
      },
    );
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/not this factory/);
    expect(devHsm.inspect('aktualizr', '1111')).toEqual([]);
    expect(existsSync(join(dir, 'sota'))).toBe(false);
  });

  it('64 concurrent /sign requests with the CA key in SoftHSM2, 8 rounds: all 201, all verify', async () => {
    // 8 rounds: a module initialized without CKF_OS_LOCKING_OK wedged under sustained concurrency
    const devices = await Promise.all(Array.from({ length: 512 }, () => deviceCsr()));
    const answers: { status: number; text: string }[] = [];
    for (let round = 0; round < 8; round++) {
      answers.push(
        ...(await Promise.all(
          devices.slice(round * 64, round * 64 + 64).map(async (d) => {
            const res = await request(`${server.url}/sign`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: lmpBody({ csr: d.csrPem, uuid: d.uuid }),
              headersTimeout: 20_000,
            });
            return { status: res.statusCode, text: await res.body.text() };
          }),
        )),
      );
    }
    expect(answers.filter((a) => a.status !== 201).map((a) => a.text)).toEqual([]);
    const ca = new X509Certificate(readFileSync(join(pkiDir, 'local-ca.pem')));
    const serials = new Set<string>();
    for (const a of answers) {
      const cert = new X509Certificate((JSON.parse(a.text) as Record<string, string>)['client.pem']);
      expect(cert.verify(ca.publicKey)).toBe(true);
      serials.add(cert.serialNumber);
    }
    expect(serials.size).toBe(512);
    expect(server.logs()).not.toMatch(/CKR_/);
  });

  it('the auto-register script passes the HSM settings the image ships', async () => {
    const devHsm = makeSoftHsm();
    const root = tempDir('kiln-root-');
    mkdirSync(join(root, 'etc/kiln'), { recursive: true });
    mkdirSync(join(root, 'etc/sota'), { recursive: true });
    writeFileSync(join(root, 'etc/os-release'), `LMP_FACTORY="${FACTORY}"\nLMP_MACHINE="m"\n`);
    writeFileSync(join(root, 'etc/kiln/device-register.conf'), `DEVICE_API=${server.url}/sign\nSTART_DAEMON=0\n`);
    writeFileSync(join(root, 'etc/sota/hsm'), `HSM_MODULE="${SOFTHSM_MODULE}"\nHSM_PIN="24682468"\nHSM_SOPIN="13571357"\n`);
    const r = await runAsync('dash', [join(ROOT, 'scripts/device-auto-register')], {
      env: { ...devHsm.env, KILN_ROOT: root, KILN_DEVICE_REGISTER: DEVICE_REGISTER },
    });
    expect(r.code).toBe(0);
    expect(readFileSync(join(root, 'var/sota/sota.toml'), 'utf8')).toContain('pass = "24682468"');
    expect(
      devHsm
        .inspect('aktualizr', '24682468')
        .map((o) => `${o.class}:${o.label}:${o.id}`)
        .sort(),
    ).toEqual(['certificate:client:03', 'private:tls:01', 'public:tls:01']);
  });
});

describe('PKCS#11 start-up failures are one line and exit 78', () => {
  let hsm: SoftHsm;
  let pkiDir: string;
  beforeAll(() => {
    hsm = makeSoftHsm();
    hsm.initToken('kiln-ca', '1234', '5678');
    pkiDir = join(tempDir(), 'pki');
    expect(
      kilnctl(
        [
          'pki',
          'init',
          '--dir',
          pkiDir,
          '--factory',
          FACTORY,
          '--gateway-dns',
          'gw.acme.test',
          '--ca-key',
          uriFor('kiln-ca', 'local-ca', hsm.pinFile('1234')),
        ],
        { env: hsm.env },
      ).code,
    ).toBe(0);
  });

  const serve = (caKey: string) =>
    kilnctl(['serve', '--pki-dir', pkiDir, '--ca-key', caKey, '--db', `sqlite:${join(tempDir(), 'k.db')}`, '--listen', '127.0.0.1:0'], {
      env: hsm.env,
    });

  it.each([
    [
      'wrong PIN',
      () => uriFor('kiln-ca', 'local-ca', hsm.pinFile('9999')),
      /^kilnctl: cannot log in to token "kiln-ca": wrong PIN \(CKR_PIN_INCORRECT\)$/,
    ],
    [
      'missing object',
      () => uriFor('kiln-ca', 'no-such-key', hsm.pinFile('1234')),
      /^kilnctl: no private key with label "no-such-key" in token "kiln-ca"$/,
    ],
    [
      'missing token',
      () => uriFor('no-such-token', 'local-ca', hsm.pinFile('1234')),
      /^kilnctl: no token "no-such-token" in PKCS#11 module /,
    ],
    [
      'missing module',
      () => uriFor('kiln-ca', 'local-ca', hsm.pinFile('1234')).replace(SOFTHSM_MODULE, '/usr/lib/nope/libnope.so'),
      /^kilnctl: cannot load PKCS#11 module \/usr\/lib\/nope\/libnope.so: /,
    ],
    [
      'missing PIN file',
      () => uriFor('kiln-ca', 'local-ca', '/nonexistent/pin'),
      /^kilnctl: cannot read the PIN file \/nonexistent\/pin: no such file or directory$/,
    ],
    ['malformed URI', () => 'pkcs11:token=kiln-ca', /^kilnctl: PKCS#11 URI: module-path is required/],
    [
      'no PIN source',
      () => uriFor('kiln-ca', 'local-ca', '/x').replace(/&pin-source=[^&]*/, ''),
      /^kilnctl: PKCS#11 URI: no PIN: add \?pin-source=file:/,
    ],
  ])('fail/%s', (_n, caKey, message) => {
    const r = serve(caKey());
    expect(r.code).toBe(78);
    expect(r.stderr.trim()).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toContain('1234');
  });
});
