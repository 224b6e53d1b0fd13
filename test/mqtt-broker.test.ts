// A real broker (issue 17): Mosquitto with a TLS listener that requires client
// certificates under Kiln's CA and reads Kiln's CRL. A device registered by the real
// client connects and publishes; after `kilnctl devices revoke` and the CRL refresh it is
// refused; a certificate from another CA is refused throughout.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mqttPublish } from './helpers/mqtt.js';
import { FACTORY, tempDir } from './helpers/pki.js';
import { freePort, kilnctl, ROOT, runAsync, startKilnctl, type ServerProcess } from './helpers/proc.js';

const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((p) => existsSync(p));
if (!MOSQUITTO) process.stdout.write('mqtt-broker.test.ts: skipped: mosquitto is not installed (./scripts/test installs it)\n');

interface Site {
  server: ServerProcess;
  pkiDir: string;
  db: string;
  crlFile: string;
}

async function site(factory: string): Promise<Site> {
  const work = tempDir();
  const pkiDir = join(work, 'pki');
  expect(kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', factory, '--gateway-dns', 'mqtt.acme.test']).code).toBe(0);
  const db = `sqlite:${join(work, 'kiln.db')}`;
  const crlFile = join(work, 'kiln.crl');
  const server = await startKilnctl(['--pki-dir', pkiDir, '--db', db, '--crl-file', crlFile]);
  return { server, pkiDir, db, crlFile };
}

/** The real client registers a device; its sota directory holds pkey.pem and client.pem. */
async function device(s: Site, factory: string): Promise<{ uuid: string; key: string; cert: string }> {
  const dir = tempDir('kiln-device-');
  writeFileSync(join(dir, 'os-release'), `LMP_FACTORY="${factory}"\nLMP_MACHINE="imx8mm-lpddr4-evk"\n`);
  const r = await runAsync(
    join(ROOT, 'bin/device-register'),
    ['--os-release', join(dir, 'os-release'), '-d', join(dir, 'sota'), '--start-daemon', '0'],
    {
      env: { DEVICE_API: `${s.server.url}/sign` },
    },
  );
  expect(r.code, r.stderr).toBe(0);
  const uuid = /Device (\S+) /.exec(r.stdout)![1];
  return { uuid, key: readFileSync(join(dir, 'sota/pkey.pem'), 'utf8'), cert: readFileSync(join(dir, 'sota/client.pem'), 'utf8') };
}

function startBroker(s: Site, port: number): { child: ChildProcess; ready: Promise<void>; log: () => string } {
  const dir = tempDir('kiln-mosquitto-');
  // client certificates chain to the factory root through the local CA, which signs the CRL
  writeFileSync(
    join(dir, 'ca.pem'),
    readFileSync(join(s.pkiDir, 'local-ca.pem'), 'utf8') + readFileSync(join(s.pkiDir, 'factory_ca.pem'), 'utf8'),
  );
  writeFileSync(
    join(dir, 'mosquitto.conf'),
    [
      'user root',
      'persistence false',
      'log_dest stdout',
      `listener ${port} 127.0.0.1`,
      `cafile ${join(dir, 'ca.pem')}`,
      `certfile ${join(s.pkiDir, 'tls-crt')}`,
      `keyfile ${join(s.pkiDir, 'tls.key')}`,
      'require_certificate true',
      'use_identity_as_username true',
      `crlfile ${s.crlFile}`,
      '',
    ].join('\n'),
  );
  const child = spawn(MOSQUITTO!, ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const ready = (async () => {
    for (let i = 0; i < 100; i++) {
      if (child.exitCode !== null) throw new Error(`mosquitto exited ${child.exitCode}: ${out}`);
      const up = await new Promise<boolean>((resolve) => {
        const c = createConnection({ host: '127.0.0.1', port }, () => (c.destroy(), resolve(true)));
        c.on('error', () => resolve(false));
      });
      if (up) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`mosquitto did not listen: ${out}`);
  })();
  return { child, ready, log: () => out };
}

const stop = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });

describe.skipIf(!MOSQUITTO)('Mosquitto admits Kiln devices and refuses revoked ones', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  it('ok/admitted, revoked, refused; another CA refused throughout', async () => {
    const kiln = await site(FACTORY);
    cleanup.push(() => kiln.server.stop());
    const other = await site('other-factory');
    cleanup.push(() => other.server.stop());
    const dev = await device(kiln, FACTORY);
    const second = await device(kiln, FACTORY);
    const stranger = await device(other, 'other-factory');

    const port = await freePort();
    const ca = readFileSync(join(kiln.pkiDir, 'factory_ca.pem'), 'utf8');
    const publish = (d: { uuid: string; key: string; cert: string }) =>
      mqttPublish({
        port,
        ca,
        cert: d.cert,
        key: d.key,
        servername: 'mqtt.acme.test',
        clientId: d.uuid,
        topic: `devices/${d.uuid}/hello`,
        message: 'hi',
      });

    let broker = startBroker(kiln, port);
    cleanup.push(() => stop(broker.child));
    await broker.ready;
    expect(await publish(dev)).toEqual({ ok: true });
    expect((await publish(stranger)).ok).toBe(false);

    // revoke, wait for the CRL file to list it, and let the broker read it again (it reads the CRL when a listener starts)
    const before = readFileSync(kiln.crlFile, 'utf8');
    const r = kilnctl(['devices', 'revoke', dev.uuid, '--reason', 'keyCompromise', '--db', kiln.db]);
    expect(r.code).toBe(0);
    for (let i = 0; i < 100 && readFileSync(kiln.crlFile, 'utf8') === before; i++) await new Promise((res) => setTimeout(res, 100));
    expect(readFileSync(kiln.crlFile, 'utf8')).not.toBe(before);
    await stop(broker.child);
    broker = startBroker(kiln, port);
    await broker.ready;

    const refused = await publish(dev);
    expect(refused.ok).toBe(false);
    expect((await publish(stranger)).ok).toBe(false);
    expect(await publish(second)).toEqual({ ok: true });
    // refused in the TLS handshake, before MQTT: the broker checked the certificate against the CRL
    expect(refused.error).not.toMatch(/CONNACK/);
  });
});
