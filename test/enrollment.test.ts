// Who may register (issue 15): token enrollment with production lots, the approval
// queue and pre-authorization, through POST /sign, kilnctl and the real device client.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsrPem } from '../pki/csr.js';
import type { LotApproval, LotProduction, NewLot } from '../server/db/store.js';
import { openSqliteStore } from '../server/db/sqlite/store.js';
import { newEnrollmentToken, tokenSha256 } from '../server/enrollment.js';
import { makeTestApp, type TestApp } from './helpers/app.js';
import { deviceCsr, FACTORY, lmpBody, tempDir } from './helpers/pki.js';
import { startSite } from './helpers/site.js';
import { kilnctl, ROOT, runAsync, type ServerProcess } from './helpers/proc.js';

const keyHash = (csrPem: string): string => createHash('sha256').update(parseCsrPem(csrPem).spkiDer).digest('hex');

async function newLot(t: TestApp, extra: Partial<NewLot> = {}): Promise<{ name: string; token: string }> {
  const token = newEnrollmentToken();
  const name = extra.name ?? `lot-${randomUUID().slice(0, 8)}`;
  await t.store.createLot({
    name,
    tokenSha256: tokenSha256(token),
    createdAt: new Date(),
    expiresAt: null,
    maxDevices: null,
    hwidPattern: null,
    deviceGroup: null,
    production: 'any' as LotProduction,
    approval: 'auto' as LotApproval,
    ...extra,
  });
  return { name, token };
}

async function sign(t: TestApp, token: string | null, o: { uuid?: string; csrPem?: string; hwid?: string; production?: boolean } = {}) {
  const d = o.csrPem ? { uuid: o.uuid!, csrPem: o.csrPem } : await deviceCsr({ uuid: o.uuid, production: o.production });
  const res = await t.request(lmpBody({ csr: d.csrPem, uuid: d.uuid, hwid: o.hwid }), { token });
  return { status: res.status, text: (await res.text()).trim(), uuid: d.uuid, csrPem: d.csrPem };
}

describe('token enrollment', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeTestApp({}, { enrollment: 'token' });
  });

  it("ok/a device with its lot's token registers and is counted against the lot", async () => {
    const lot = await newLot(t);
    const r = await sign(t, lot.token);
    expect(r.status).toBe(201);
    expect((await t.store.getLot(lot.name))?.admitted).toBe(1);
    // the token never reaches the log; the lot's name is not needed there either
    expect(t.rawLogs()).not.toContain(lot.token);
  });

  it.each<[string, (lot: { name: string; token: string }) => string | null, number, RegExp]>([
    ['no token', () => null, 401, /^an enrollment token is required in the OSF-TOKEN header$/],
    ['the dummy na', () => 'na', 401, /^the enrollment token is not valid$/],
    ['a wrong token', () => newEnrollmentToken(), 401, /^the enrollment token is not valid$/],
  ])('fail/%s: %s, and no lot is named', async (_n, tokenOf, status, reason) => {
    const lot = await newLot(t);
    const r = await sign(t, tokenOf(lot));
    expect(r.status).toBe(status);
    expect(r.text).toMatch(reason);
    expect(r.text).not.toContain(lot.name);
    expect(await t.store.getDevice(r.uuid)).toBeUndefined();
  });

  it('fail/expired, revoked, rotated, wrong hardware id, production rules: the reason an operator can act on', async () => {
    const expired = await newLot(t, { expiresAt: new Date(Date.now() - 1000) });
    expect(await sign(t, expired.token)).toMatchObject({
      status: 403,
      text: expect.stringMatching(new RegExp(`^lot ${expired.name} expired at `)),
    });

    const revoked = await newLot(t);
    await t.store.revokeLot(revoked.name, new Date());
    expect(await sign(t, revoked.token)).toMatchObject({
      status: 401,
      text: `lot ${revoked.name} was revoked: its token no longer enrolls devices`,
    });

    const rotated = await newLot(t);
    await t.store.rotateLotToken(rotated.name, tokenSha256(newEnrollmentToken()));
    expect(await sign(t, rotated.token)).toMatchObject({ status: 401, text: 'the enrollment token is not valid' });

    const imx = await newLot(t, { hwidPattern: 'imx8mm-*' });
    expect(await sign(t, imx.token, { hwid: 'intel-corei7-64' })).toMatchObject({
      status: 403,
      text: `hardware id intel-corei7-64 is not allowed in lot ${imx.name} (allowed: imx8mm-*)`,
    });
    expect((await sign(t, imx.token, { hwid: 'imx8mm-lpddr4-evk' })).status).toBe(201);

    const prod = await newLot(t, { production: 'required' });
    expect(await sign(t, prod.token)).toMatchObject({ status: 403, text: expect.stringMatching(/enrolls production devices only/) });
    expect((await sign(t, prod.token, { production: true })).status).toBe(201);
    const noProd = await newLot(t, { production: 'forbidden' });
    expect(await sign(t, noProd.token, { production: true })).toMatchObject({
      status: 403,
      text: `lot ${noProd.name} does not enroll production devices`,
    });
  });

  it("ok/64 concurrent registrations against --max-devices 50 admit exactly 50; an admitted device's retry still gets its certificate", async () => {
    const lot = await newLot(t, { maxDevices: 50 });
    const csrs = await Promise.all(Array.from({ length: 64 }, () => deviceCsr()));
    const results = await Promise.all(csrs.map((d) => sign(t, lot.token, { uuid: d.uuid, csrPem: d.csrPem })));
    const created = results.filter((r) => r.status === 201);
    expect(created).toHaveLength(50);
    const full = results.filter((r) => r.status !== 201);
    expect(full).toHaveLength(14);
    for (const r of full) expect(r).toMatchObject({ status: 403, text: `lot ${lot.name} is full: 50 of 50 devices enrolled` });
    expect((await t.store.getLot(lot.name))?.admitted).toBe(50);
    const again = await sign(t, lot.token, { uuid: created[0].uuid, csrPem: created[0].csrPem });
    expect(again.status).toBe(201);
  });
});

describe('manual lots: the approval queue', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeTestApp({}, { enrollment: 'token' });
  });

  it('ok/pending (202) until approved; then the same key gets 201 and another key stays refused', async () => {
    const lot = await newLot(t, { approval: 'manual' });
    const d = await deviceCsr();
    const first = await sign(t, lot.token, { uuid: d.uuid, csrPem: d.csrPem, hwid: 'imx8mm-lpddr4-evk' });
    expect(first.status).toBe(202);
    expect(first.text).toBe(`device ${d.uuid} awaits approval by an operator (lot ${lot.name}): kilnctl approvals approve ${d.uuid}`);
    expect((await sign(t, lot.token, { uuid: d.uuid, csrPem: d.csrPem })).status).toBe(202);
    expect(await t.store.approval(d.uuid)).toMatchObject({
      status: 'pending',
      attempts: 2,
      lot: lot.name,
      hardwareId: 'imx8mm-lpddr4-evk',
      keySha256: keyHash(d.csrPem),
      clientAddress: '192.0.2.10',
    });
    const other = await deviceCsr({ uuid: d.uuid });
    expect(await sign(t, lot.token, { uuid: d.uuid, csrPem: other.csrPem })).toMatchObject({
      status: 409,
      text: `device ${d.uuid} already awaits approval with another key`,
    });

    await t.store.decideApprovals([d.uuid], 'approved', new Date());
    expect((await sign(t, lot.token, { uuid: d.uuid, csrPem: d.csrPem })).status).toBe(201);
    expect(await sign(t, lot.token, { uuid: d.uuid, csrPem: other.csrPem })).toMatchObject({
      status: 409,
      text: `device ${d.uuid} was approved with another key; this key is refused`,
    });
  });

  it('ok/reject puts the UUID on the deny-list', async () => {
    const lot = await newLot(t, { approval: 'manual' });
    const r = await sign(t, lot.token);
    expect(r.status).toBe(202);
    await t.store.decideApprovals([r.uuid], 'rejected', new Date());
    expect(await t.store.findDenied(r.uuid)).toMatchObject({ reason: 'rejected by an operator' });
    expect((await sign(t, lot.token, { uuid: r.uuid, csrPem: r.csrPem })).status).toBe(403);
  });
});

describe('pre-authorization', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeTestApp({}, { enrollment: 'token' });
  });

  it('ok/listed admitted, unlisted refused, fingerprint and hardware id must match', async () => {
    const lot = await newLot(t, { approval: 'preauthorized' });
    const listed = await deviceCsr();
    const withKey = await deviceCsr();
    const withHwid = await deviceCsr();
    await t.store.importPreauthorized(
      [
        { uuid: listed.uuid, keySha256: null, hardwareId: null, name: null, lot: null },
        { uuid: withKey.uuid, keySha256: keyHash(withKey.csrPem), hardwareId: null, name: null, lot: lot.name },
        { uuid: withHwid.uuid, keySha256: null, hardwareId: 'imx8mm-lpddr4-evk', name: null, lot: 'another-lot' },
      ],
      new Date(),
    );
    expect((await sign(t, lot.token, { uuid: listed.uuid, csrPem: listed.csrPem })).status).toBe(201);
    expect((await sign(t, lot.token, { uuid: withKey.uuid, csrPem: withKey.csrPem })).status).toBe(201);
    const unlisted = await sign(t, lot.token);
    expect(unlisted).toMatchObject({ status: 403, text: `device ${unlisted.uuid} is not pre-authorized for lot ${lot.name}` });
    const wrongKey = await deviceCsr({ uuid: withKey.uuid });
    await t.store.allowRekey([withKey.uuid], '', new Date()); // the key check is the lot's, not the re-key policy
    expect(await sign(t, lot.token, { uuid: withKey.uuid, csrPem: wrongKey.csrPem })).toMatchObject({
      status: 403,
      text: expect.stringMatching(/its key does not match its pre-authorization/),
    });
    // listed for another lot
    expect((await sign(t, lot.token, { uuid: withHwid.uuid, csrPem: withHwid.csrPem, hwid: 'imx8mm-lpddr4-evk' })).status).toBe(403);
  });
});

describe('kilnctl lots, approvals and preauthorize, and the real device client, against a token server', () => {
  let server: ServerProcess;
  let work: string;
  let db: string;
  beforeAll(async () => {
    ({ server, work, db } = await startSite(['--enrollment', 'token']));
  });
  afterAll(async () => {
    await server.stop();
  });

  const device = (token: string | undefined, extra: string[] = []) => {
    const dir = tempDir('kiln-device-');
    writeFileSync(join(dir, 'os-release'), `LMP_FACTORY="${FACTORY}"\nLMP_MACHINE="imx8mm-lpddr4-evk"\n`);
    if (token !== undefined) writeFileSync(join(dir, 'token'), token + '\n', { mode: 0o600 });
    const sota = join(dir, 'sota');
    return {
      sota,
      run: () =>
        runAsync(
          join(ROOT, 'bin/device-register'),
          [
            '--os-release',
            join(dir, 'os-release'),
            '-d',
            sota,
            '--start-daemon',
            '0',
            ...(token !== undefined ? ['--api-token-file', join(dir, 'token')] : []),
            ...extra,
          ],
          { env: { DEVICE_API: `${server.url}/sign` } },
        ),
    };
  };

  it('ok/lots create prints the token once; device-register registers with it; revoked and wrong tokens exit 77', async () => {
    const created = kilnctl(['lots', 'create', 'line-1', '--max-devices', '10', '--hwid', 'imx8mm-*', '--db', db, '--json']);
    expect(created.code).toBe(0);
    const lot = JSON.parse(created.stdout) as { name: string; token: string; tokenSha256?: string };
    expect(lot.token).toMatch(/^kiln_lot_[A-Za-z0-9_-]{43}$/);
    expect(lot.tokenSha256).toBeUndefined();
    expect(readFileSync(join(work, 'kiln.db')).includes(Buffer.from(lot.token))).toBe(false);
    expect(kilnctl(['lots', 'show', 'line-1', '--db', db]).stdout).not.toContain(lot.token);

    const ok = await device(lot.token).run();
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(JSON.parse(kilnctl(['lots', 'show', 'line-1', '--db', db, '--json']).stdout)).toMatchObject({ admitted: 1, maxDevices: 10 });

    const wrong = await device('kiln_lot_nope').run();
    expect(wrong.code).toBe(77);
    expect(wrong.stderr).toBe('device-register: registration refused: HTTP 401: the enrollment token is not valid\n');
    const none = await device(undefined).run();
    expect(none.code).toBe(77);

    expect(kilnctl(['lots', 'revoke', 'line-1', '--db', db]).code).toBe(0);
    const revoked = await device(lot.token).run();
    expect(revoked.code).toBe(77);
    expect(revoked.stderr).toMatch(/HTTP 401: lot line-1 was revoked/);
    expect(server.logs()).not.toContain(lot.token);
  });

  it('ok/a manual lot: device-register exits 75 while pending, keeps its identity, and registers once approved', async () => {
    const out = join(work, 'manual.token');
    expect(kilnctl(['lots', 'create', 'line-2', '--approval', 'manual', '--token-out', out, '--db', db]).code).toBe(0);
    const token = readFileSync(out, 'utf8').trim();
    const d = device(token);
    const first = await d.run();
    expect(first.code).toBe(75);
    expect(first.stderr).toMatch(
      /^device-register: registration awaits approval by an operator; retry later: HTTP 202: device [0-9a-f-]{36} awaits approval/,
    );
    const second = await d.run();
    expect(second.code).toBe(75);
    const pending = JSON.parse(kilnctl(['approvals', 'list', '--db', db, '--json']).stdout) as { uuid: string; attempts: number }[];
    expect(pending).toHaveLength(1);
    expect(pending[0].attempts).toBe(2); // the same UUID and key both times
    expect(kilnctl(['approvals', 'approve', pending[0].uuid, '--db', db]).stdout).toBe(`Approved ${pending[0].uuid}\n`);
    const third = await d.run();
    expect(third.code).toBe(0);
    expect(existsSync(join(d.sota, 'client.pem'))).toBe(true);
    expect(existsSync(join(d.sota, '.kiln-pending'))).toBe(false);
    const cert = readFileSync(join(d.sota, 'client.pem'), 'utf8');
    expect(cert).toContain('BEGIN CERTIFICATE');
  });

  it('ok/preauthorize imports a CSV; a bad row names its line and imports nothing', async () => {
    expect(
      kilnctl(['lots', 'create', 'line-3', '--approval', 'preauthorized', '--token-out', join(work, 'pre.token'), '--db', db]).code,
    ).toBe(0);
    const good = randomUUID();
    const csv = join(work, 'devices.csv');
    writeFileSync(csv, `uuid,key_sha256,hardware_id,name,lot\n${good},,imx8mm-lpddr4-evk,"Board, one",line-3\n`);
    const r = kilnctl(['devices', 'preauthorize', '--file', csv, '--db', db]);
    expect(r.stdout).toBe('Pre-authorized 1 devices\n');
    const bad = join(work, 'bad.csv');
    const first = randomUUID();
    writeFileSync(bad, `${first},,,,line-3\nnot-a-uuid,,,,\n`);
    const refused = kilnctl(['devices', 'preauthorize', '--file', bad, '--db', db]);
    expect(refused.code).toBe(65);
    expect(refused.stderr).toBe(`kilnctl: ${bad} line 2: "not-a-uuid" is not a device UUID; nothing was imported\n`);
    const store = openSqliteStore(join(work, 'kiln.db'), { create: false });
    expect(await store.preauthorization(first)).toBeUndefined();
    expect(await store.preauthorization(good)).toMatchObject({ hardwareId: 'imx8mm-lpddr4-evk', name: 'Board, one', lot: 'line-3' });
    await store.close();
    const unknownLot = join(work, 'lot.csv');
    writeFileSync(unknownLot, `${randomUUID()},,,,line-9\n`);
    expect(kilnctl(['devices', 'preauthorize', '--file', unknownLot, '--db', db]).stderr).toMatch(/line 1: no lot named line-9/);

    const token = readFileSync(join(work, 'pre.token'), 'utf8').trim();
    expect((await device(token, ['-u', good]).run()).code).toBe(0);
    const stranger = await device(token).run();
    expect(stranger.code).toBe(77);
    expect(stranger.stderr).toMatch(/is not pre-authorized for lot line-3/);
  });
});
