// Idempotent registration and the re-key policy (issue 14): a device whose 201 was lost
// retries and gets the same certificate; a new key for a registered UUID is refused
// unless the server allows re-keys or an operator allowed one, and then exactly once.
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsrPem } from '../pki/csr.js';
import { openSqliteStore } from '../server/db/sqlite/store.js';
import { makeTestApp, type TestApp } from './helpers/app.js';
import { deviceCsr, FACTORY, lmpBody, tempDir } from './helpers/pki.js';
import { kilnctl, startKilnctl } from './helpers/proc.js';
import { startStandIn, type StandIn } from './helpers/stand-in.js';

type Files = Record<string, string>;

async function post(t: TestApp, csr: string, uuid: string): Promise<{ status: number; text: string }> {
  const res = await t.request(lmpBody({ csr, uuid }));
  return { status: res.status, text: await res.text() };
}

describe('a retry with the same key gets the same certificate', () => {
  it.each<[string, Parameters<typeof makeTestApp>[0]]>([
    ['defaults', {}],
    ['--reject-reregistration', { rejectReregistration: true }],
    ['--serial-from-uuid', { serialFromUuid: true }],
    ['--rekey allow', { rekey: 'allow' }],
  ])('ok/lost 201 with %s: 201, the same client.pem, nothing new recorded but a repeat', async (_n, settings) => {
    const t = await makeTestApp(settings);
    const d = await deviceCsr();
    const first = await post(t, d.csrPem, d.uuid);
    const again = await post(t, d.csrPem, d.uuid);
    expect([first.status, again.status]).toEqual([201, 201]);
    const a = JSON.parse(first.text) as Files;
    const b = JSON.parse(again.text) as Files;
    expect(b['client.pem']).toBe(a['client.pem']);
    expect(b['client.chained']).toBe(a['client.chained']);
    expect(await t.store.certificatesOf(d.uuid)).toHaveLength(1);
    expect(await t.store.getDevice(d.uuid)).toMatchObject({ registrations: 1, repeats: 1 });
    const lines = t.logLines().filter((l) => l.uuid === d.uuid);
    expect(lines.map((l) => l.repeat)).toEqual([undefined, true]);
    expect(lines[0].serial).toBe(lines[1].serial);
  });

  it('ok/two identical requests at once: one certificate, both answered with it', async () => {
    const t = await makeTestApp();
    const d = await deviceCsr();
    const [a, b] = await Promise.all([post(t, d.csrPem, d.uuid), post(t, d.csrPem, d.uuid)]);
    expect([a.status, b.status]).toEqual([201, 201]);
    expect((JSON.parse(a.text) as Files)['client.pem']).toBe((JSON.parse(b.text) as Files)['client.pem']);
    expect(await t.store.certificatesOf(d.uuid)).toHaveLength(1);
  });

  it('fail/a denied device does not get its certificate again', async () => {
    const t = await makeTestApp();
    const d = await deviceCsr();
    expect((await post(t, d.csrPem, d.uuid)).status).toBe(201);
    await t.store.deny([d.uuid], 'stolen', new Date());
    expect((await post(t, d.csrPem, d.uuid)).status).toBe(403);
  });
});

describe('re-key policy', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeTestApp();
  });

  it('fail/a new key for a registered UUID is 409, naming the operator command', async () => {
    const d = await deviceCsr();
    expect((await post(t, d.csrPem, d.uuid)).status).toBe(201);
    const other = await deviceCsr({ uuid: d.uuid });
    const r = await post(t, other.csrPem, d.uuid);
    expect(r.status).toBe(409);
    expect(r.text).toBe(
      `device ${d.uuid} is registered with another key; if this is the same device with a new key, an operator can allow it once: kilnctl devices allow-rekey ${d.uuid}\n`,
    );
    expect(await t.store.certificatesOf(d.uuid)).toHaveLength(1);
  });

  it('ok/an allowed re-key is used exactly once', async () => {
    const d = await deviceCsr();
    const first = await post(t, d.csrPem, d.uuid);
    await t.store.allowRekey([d.uuid], 'board replaced', new Date());
    const rekeyed = await deviceCsr({ uuid: d.uuid });
    const second = await post(t, rekeyed.csrPem, d.uuid);
    expect(second.status).toBe(201);
    expect((JSON.parse(second.text) as Files)['client.pem']).not.toBe((JSON.parse(first.text) as Files)['client.pem']);
    // the new key is now the device's: its retry is a repeat, the old key a re-key
    expect((await post(t, rekeyed.csrPem, d.uuid)).status).toBe(201);
    expect((await post(t, d.csrPem, d.uuid)).status).toBe(409);
    expect((await post(t, (await deviceCsr({ uuid: d.uuid })).csrPem, d.uuid)).status).toBe(409);
    const allowance = await t.store.rekeyAllowance(d.uuid);
    expect(allowance?.usedAt).toBeInstanceOf(Date);
    expect(allowance?.usedSerial).toBe((await t.store.getDevice(d.uuid))?.serial);
    expect(await t.store.certificatesOf(d.uuid)).toHaveLength(2);
  });

  it('fail/allow-rekey of an unknown UUID changes nothing', async () => {
    await expect(t.store.allowRekey(['00000000-0000-4000-8000-0000000000aa'], '', new Date())).rejects.toMatchObject({ code: 'not_found' });
  });
});

describe('kilnctl devices allow-rekey against a running server', () => {
  it('ok/the operator allows one re-key; devices show says it was used', async () => {
    const work = tempDir();
    expect(kilnctl(['pki', 'init', '--dir', join(work, 'pki'), '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']).code).toBe(0);
    const db = `sqlite:${join(work, 'kiln.db')}`;
    const server = await startKilnctl(['--pki-dir', join(work, 'pki'), '--db', db]);
    const sign = async (csr: string, uuid: string): Promise<number> => {
      const res = await request(`${server.url}/sign`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: lmpBody({ csr, uuid }),
      });
      await res.body.text();
      return res.statusCode;
    };
    try {
      const d = await deviceCsr();
      expect(await sign(d.csrPem, d.uuid)).toBe(201);
      const fresh = await deviceCsr({ uuid: d.uuid });
      expect(await sign(fresh.csrPem, d.uuid)).toBe(409);
      const allow = kilnctl(['devices', 'allow-rekey', d.uuid, '--reason', 'board replaced', '--db', db]);
      expect(allow.code).toBe(0);
      expect(allow.stdout).toBe(`Allowed one registration with a new key for ${d.uuid}\n`);
      expect(await sign(fresh.csrPem, d.uuid)).toBe(201);
      expect(await sign((await deviceCsr({ uuid: d.uuid })).csrPem, d.uuid)).toBe(409);
      const show = kilnctl(['devices', 'show', d.uuid, '--db', db]).stdout;
      expect(show).toMatch(/^Re-key: +allowed \S+ \(board replaced\), used \S+ for serial [0-9a-f]+$/m);
      expect(kilnctl(['devices', 'allow-rekey', '00000000-0000-4000-8000-0000000000ab', '--db', db]).code).toBe(65);
    } finally {
      await server.stop();
    }
  });
});

describe('sync mode: a delivery that failed after the commit is tried again on the retry', () => {
  let up: StandIn;
  beforeAll(async () => {
    up = await startStandIn();
  });
  afterAll(async () => {
    await up.close();
  });

  it('ok/503 to the device, then its retry delivers and gets 201 with the same certificate', async () => {
    const work = tempDir();
    expect(kilnctl(['pki', 'init', '--dir', join(work, 'pki'), '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']).code).toBe(0);
    writeFileSync(join(work, 'token'), 'tok\n', { mode: 0o600 });
    const db = `sqlite:${join(work, 'kiln.db')}`;
    const api = new URL('/ota/devices/', up.url).toString();
    const server = await startKilnctl([
      '--pki-dir',
      join(work, 'pki'),
      '--db',
      db,
      '--upstream-api',
      api,
      '--upstream-token-file',
      join(work, 'token'),
      '--upstream-mode',
      'sync',
      '--reject-reregistration',
    ]);
    try {
      up.answer(() => ({ status: 503, body: 'down' }));
      const d = await deviceCsr();
      const sign = async (): Promise<{ status: number; text: string }> => {
        const res = await request(`${server.url}/sign`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: lmpBody({ csr: d.csrPem, uuid: d.uuid }),
        });
        return { status: res.statusCode, text: await res.body.text() };
      };
      const first = await sign();
      expect(first.status).toBe(503);
      const committed = JSON.parse(kilnctl(['devices', 'show', d.uuid, '--db', db, '--json']).stdout) as {
        certificates: { pem: string }[];
      };
      expect(committed.certificates).toHaveLength(1);

      up.seen.length = 0;
      up.answer(() => ({ status: 201, body: '{}' }));
      const retry = await sign();
      expect(retry.status).toBe(201);
      expect((JSON.parse(retry.text) as Files)['client.pem']).toBe(committed.certificates[0].pem);
      const puts = up.seen.filter((s) => s.method === 'PUT');
      expect(puts).toHaveLength(1);
      expect((JSON.parse(puts[0].body) as Files)['client.pem']).toBe(committed.certificates[0].pem);
      expect(JSON.parse(kilnctl(['upstream', 'status', '--db', db, '--json']).stdout)).toMatchObject({ delivered: 1, failed: 0 });
      // delivered now: a further retry does not PUT again (the upstream would answer 409)
      expect((await sign()).status).toBe(201);
      expect(up.seen.filter((s) => s.method === 'PUT')).toHaveLength(1);
    } finally {
      await server.stop();
    }
  });
});

describe('registries from before the key hash', () => {
  it('ok/the hash is filled in from the current certificate, so a retry is still a retry', async () => {
    const path = join(tempDir(), 'kiln.db');
    const t = await makeTestApp({}, { dbPath: path });
    const d = await deviceCsr();
    expect((await post(t, d.csrPem, d.uuid)).status).toBe(201);
    await t.store.close();
    const raw = new Database(path);
    raw.prepare('UPDATE devices SET key_sha256 = NULL').run();
    raw.close();
    const reopened = openSqliteStore(path);
    const want = createHash('sha256').update(parseCsrPem(d.csrPem).spkiDer).digest('hex');
    expect((await reopened.getDevice(d.uuid))?.keySha256).toBe(want);
    await reopened.close();
  });
});

describe('the same key with another subject is not a retry', () => {
  it('ok/a device that now asks for a production certificate gets a new one', async () => {
    const t = await makeTestApp();
    const d = await deviceCsr();
    const first = await post(t, d.csrPem, d.uuid);
    const production = await deviceCsr({ uuid: d.uuid, key: d.key, production: true });
    const second = await post(t, production.csrPem, d.uuid);
    expect([first.status, second.status]).toEqual([201, 201]);
    expect((JSON.parse(second.text) as Files)['client.pem']).not.toBe((JSON.parse(first.text) as Files)['client.pem']);
    expect(await t.store.getDevice(d.uuid)).toMatchObject({ production: true, registrations: 2, repeats: 0 });
  });
});
