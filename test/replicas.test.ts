// Several servers, one registry (issue 20): three `kilnctl serve` replicas on one real
// PostgreSQL under load from several clients, one killed with SIGKILL mid-load and
// started again. Every 201 is in the registry, no serial twice, every device created
// upstream exactly once (against a stand-in upstream), a lot never over-admits, and a
// denial made on the registry is seen by every replica at once.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgSchema, type PgSchema } from './helpers/pg.js';
import { deviceCsr, FACTORY, lmpBody, tempDir } from './helpers/pki.js';
import { kilnctl, startKilnctl, type ServerProcess } from './helpers/proc.js';
import { startStandIn, type StandIn } from './helpers/stand-in.js';

let pg: PgSchema;
let up: StandIn;
let work: string;
let args: string[];
const replicas: ServerProcess[] = [];
/** uuid → how many times the stand-in created it (201); a repeat PUT is answered 409 */
const created = new Map<string, number>();
/** every PUT the stand-in received */
let puts = 0;

async function register(url: string, token: string): Promise<{ status: number; uuid: string; serial?: string }> {
  const d = await deviceCsr();
  try {
    const res = await fetch(`${url}/sign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'osf-token': token },
      body: lmpBody({ csr: d.csrPem, uuid: d.uuid }),
      signal: AbortSignal.timeout(15_000),
    });
    if (res.status !== 201) return { status: res.status, uuid: d.uuid };
    const pem = ((await res.json()) as Record<string, string>)['client.pem'];
    const { parseCertificatePem } = await import('../pki/certificate.js');
    return { status: 201, uuid: d.uuid, serial: parseCertificatePem(pem).serialHex };
  } catch {
    return { status: 0, uuid: d.uuid }; // the replica was killed under this request
  }
}

beforeAll(async () => {
  pg = await pgSchema();
  up = await startStandIn();
  up.answer((req) => {
    puts++;
    // the device's name is its UUID here (lmp-device-register's default)
    const uuid = (JSON.parse(req.body) as { name: string }).name;
    const n = created.get(uuid) ?? 0;
    if (n > 0) return { status: 409, body: '{"detail":"exists"}', delayMs: 300 };
    created.set(uuid, 1);
    return { status: 201, body: '{}', delayMs: 300 };
  });
  work = tempDir('kiln-replicas-');
  const pkiDir = join(work, 'pki');
  expect(kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']).code).toBe(0);
  writeFileSync(join(work, 'upstream.token'), 'upstream-token\n', { mode: 0o600 });
  args = [
    '--pki-dir',
    pkiDir,
    '--db',
    pg.url,
    '--enrollment',
    'token',
    '--upstream-api',
    up.url.replace(/\/sign$/, '/ota/devices/'),
    '--upstream-token-file',
    join(work, 'upstream.token'),
    '--upstream-retry-base-ms',
    '100',
    '--log-level',
    'warn',
  ];
  // the three start together: one migrates, the others wait for it
  replicas.push(...(await Promise.all([0, 1, 2].map(() => startKilnctl(args)))));
}, 60_000);

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await up?.close();
  await pg?.drop();
});

describe('three replicas on one PostgreSQL', () => {
  it('ok/one killed with SIGKILL mid-load: every 201 recorded once, no serial twice, each device created upstream once, the lot exact', async () => {
    const lots: Record<string, string> = {};
    for (const [name, max] of [
      ['line', null],
      ['small', 25],
    ] as const) {
      const file = join(work, `${name}.token`);
      const extra = max ? ['--max-devices', String(max)] : [];
      expect(kilnctl(['lots', 'create', name, ...extra, '--token-out', file, '--db', pg.url]).code).toBe(0);
      lots[name] = readFileSync(file, 'utf8').trim();
    }

    const answers: { status: number; uuid: string; serial?: string; lot: string }[] = [];
    let stop = false;
    let n = 0;
    const client = async (k: number): Promise<void> => {
      while (!stop) {
        const replica = replicas[(k + n++) % replicas.length];
        const lot = n % 3 === 0 ? 'small' : 'line';
        answers.push({ ...(await register(replica.url, lots[lot])), lot });
      }
    };
    const load = Promise.all(Array.from({ length: 6 }, (_, k) => client(k)));
    await new Promise((r) => setTimeout(r, 1500));
    const victim = replicas[1];
    // the stand-in answers each PUT after 300 ms: the victim dies holding claimed, undelivered rows
    expect(await victim.stop('SIGKILL')).toBe(null);
    const killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 500));
    replicas[1] = await startKilnctl(args);
    await new Promise((r) => setTimeout(r, 1500));
    stop = true;
    await load;

    const ok = answers.filter((a) => a.status === 201);
    expect(ok.length).toBeGreaterThan(100);
    // nothing but 201, the small lot's 403 once it is full, and requests cut by the kill
    expect(answers.filter((a) => ![201, 403, 0, 503].includes(a.status))).toEqual([]);
    expect(answers.some((a) => a.status === 0)).toBe(true);

    const rows = await pg.query<{ serial: string; uuid: string }>('SELECT serial, uuid FROM certificates');
    const bySerial = new Map(rows.map((r) => [r.serial, r.uuid]));
    expect(bySerial.size).toBe(rows.length); // no serial twice
    for (const a of ok) expect(bySerial.get(a.serial!), a.uuid).toBe(a.uuid);
    // one certificate per device: no client retried, so a second one would be a double record
    expect(new Set(rows.map((r) => r.uuid)).size).toBe(rows.length);

    const [small] = await pg.query<{ admitted: number }>("SELECT admitted FROM lots WHERE name = 'small'");
    const [smallDevices] = await pg.query<{ n: string }>("SELECT count(*) AS n FROM devices WHERE lot = 'small'");
    expect(small.admitted).toBe(25);
    expect(Number(smallDevices.n)).toBe(25);
    expect(ok.filter((a) => a.lot === 'small').length).toBeLessThanOrEqual(25);

    // every recorded device reaches the upstream exactly once (a dead replica's claims come back after their lease)
    const deadline = Date.now() + 60_000;
    for (;;) {
      const [left] = await pg.query<{ n: string }>("SELECT count(*) AS n FROM outbox WHERE status <> 'delivered'");
      if (Number(left.n) === 0) break;
      if (Date.now() > deadline) throw new Error(`${left.n} deliveries still pending`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // the dead replica's claims were delivered by the others once their 30 s lease ran out
    expect(Date.now() - killedAt).toBeGreaterThan(25_000);
    const uuids = new Set(rows.map((r) => r.uuid));
    expect(new Set(created.keys())).toEqual(uuids);
    expect([...created.values()].every((c) => c === 1)).toBe(true);
    // rows are claimed, not raced for: the only second PUTs are of rows the victim had claimed
    // (at most one claim of 16 in flight when it died)
    expect(puts - created.size).toBeLessThanOrEqual(16);
  }, 120_000);

  it('ok/a denial made on the registry is seen by every replica at once', async () => {
    const file = join(work, 'deny.token');
    expect(kilnctl(['lots', 'create', 'deny-lot', '--token-out', file, '--db', pg.url]).code).toBe(0);
    const token = readFileSync(file, 'utf8').trim();
    const d = await deviceCsr();
    const uuid = d.uuid;
    expect(kilnctl(['devices', 'deny', uuid, '--db', pg.url]).code).toBe(0);
    for (const r of replicas) {
      const res = await fetch(`${r.url}/sign`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'osf-token': token },
        body: lmpBody({ csr: d.csrPem, uuid }),
      });
      expect([res.status, await res.text()]).toEqual([403, `device ${uuid} is on the deny-list\n`]);
    }
  });

  it('ok/a revocation is listed by one CRL, made once and served by every replica', async () => {
    const crlNumber = async (url: string): Promise<number> =>
      ((await (await fetch(`${url}/healthz`)).json()) as { crl: { number: number } }).crl.number;
    const before = await Promise.all(replicas.map((r) => crlNumber(r.url)));
    expect(new Set(before).size).toBe(1);
    const [{ uuid, serial }] = await pg.query<{ uuid: string; serial: string }>('SELECT uuid, serial FROM certificates LIMIT 1');
    expect(kilnctl(['devices', 'revoke', uuid, '--db', pg.url]).code).toBe(0);
    const deadline = Date.now() + 15_000;
    let after = before;
    while (after.some((n) => n === before[0]) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      after = await Promise.all(replicas.map((r) => crlNumber(r.url)));
    }
    // one new CRL for all three, not one each
    expect(after).toEqual([before[0] + 1, before[0] + 1, before[0] + 1]);
    const ders = await Promise.all(replicas.map(async (r) => Buffer.from(await (await fetch(`${r.url}/crl`)).arrayBuffer())));
    expect(ders[1].equals(ders[0]) && ders[2].equals(ders[0])).toBe(true);
    const { X509Crl } = await import('@peculiar/x509');
    expect(new X509Crl(ders[0]).entries.map((e) => e.serialNumber.toLowerCase().replace(/^(00)+/, ''))).toContain(serial);
  });
});
