// Operating Kiln (issue 19): metrics that move, honest readiness, a writer that comes
// back, a registry that cannot vanish silently, a full disk, a lock held by another
// process, online backups, and shedding load. Real servers, real files, a real tmpfs.
import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, describe, expect, it } from 'vitest';
import { parseServeConfig } from '../server/config.js';
import { createJsonLogger } from '../server/logger.js';
import { startServer, type RunningServer } from '../server/main.js';
import { deviceCsr, FACTORY, lmpBody, tempDir } from './helpers/pki.js';
import { freePort, kilnctl, run, startKilnctl, type ServerProcess } from './helpers/proc.js';

/** One /sign of a new device: the status, its UUID, and the Retry-After header. */
async function sign(url: string): Promise<{ status: number; uuid: string; retryAfter: string | null; body: string }> {
  const d = await deviceCsr();
  try {
    const res = await fetch(`${url}/sign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: lmpBody({ csr: d.csrPem, uuid: d.uuid }),
    });
    return { status: res.status, uuid: d.uuid, retryAfter: res.headers.get('retry-after'), body: await res.text() };
  } catch (err) {
    return { status: 0, uuid: d.uuid, retryAfter: null, body: String(err) };
  }
}

const readyz = async (url: string): Promise<{ status: number; body: { status: string; checks: Record<string, string> } }> => {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string> } };
};

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The UUIDs of a registry's certificates, read straight from the file. */
function registered(dbPath: string): Set<string> {
  const db = new Database(dbPath, { readonly: true });
  try {
    return new Set((db.prepare('SELECT uuid FROM certificates').all() as { uuid: string }[]).map((r) => r.uuid));
  } finally {
    db.close();
  }
}

function newPki(): { work: string; pkiDir: string } {
  const work = tempDir('kiln-ops-');
  const pkiDir = join(work, 'pki');
  expect(kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']).code).toBe(0);
  return { work, pkiDir };
}

type Sample = {
  name: string;
  type: string;
  metrics: { labels?: Record<string, string>; value?: string; buckets?: Record<string, string> }[];
};

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusTextFormat(await res.text()) as Sample[];
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}): number => {
  const family = samples.find((s) => s.name === name);
  if (!family) throw new Error(`no metric ${name}`);
  const m = family.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  // a histogram's count is its +Inf bucket (the parser keeps no labels on histograms: one series per test server)
  return m ? Number(m.value ?? m.buckets?.['+Inf']) : 0;
};

describe('GET /metrics', () => {
  let server: ServerProcess;
  let metricsDb: string;
  afterAll(async () => void (await server?.stop()));

  it('ok/parses as Prometheus text; the counters move as registrations succeed and fail', async () => {
    const { work, pkiDir } = newPki();
    metricsDb = `sqlite:${join(work, 'kiln.db')}`;
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', metricsDb]);
    const before = await scrape(server.url);
    for (let i = 0; i < 3; i++) expect((await sign(server.url)).status).toBe(201);
    const wrongFactory = await deviceCsr({ factory: 'other-factory' });
    const refused = await fetch(`${server.url}/sign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: lmpBody({ csr: wrongFactory.csrPem, uuid: wrongFactory.uuid }),
    });
    expect(refused.status).toBe(400);
    const after = await scrape(server.url);
    const issued = { route: 'sign', outcome: 'issued', reason: '' };
    expect(value(after, 'kiln_registrations_total', issued) - value(before, 'kiln_registrations_total', issued)).toBe(3);
    expect(value(after, 'kiln_registrations_total', { route: 'sign', outcome: 'refused', reason: 'policy' })).toBe(1);
    expect(value(after, 'kiln_request_duration_seconds') - value(before, 'kiln_request_duration_seconds')).toBe(4);
    expect(value(after, 'kiln_sign_duration_seconds')).toBe(3);
    expect(value(after, 'kiln_writer_batch_size')).toBeGreaterThanOrEqual(1);
    expect(value(after, 'kiln_writer_up')).toBe(1);
    expect(value(after, 'kiln_ca_key_up', { backend: 'file' })).toBe(1);
    const localCaNotAfter = value(after, 'kiln_certificate_not_after_seconds', { certificate: 'local_ca' });
    expect(localCaNotAfter * 1000).toBeGreaterThan(Date.now() + 9 * 365 * 86_400_000);
    expect(after.find((s) => s.name === 'kiln_build_info')?.metrics[0].labels?.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(value(after, 'kiln_sign_in_flight')).toBe(0);
  });

  it('ok/lot usage is exported per lot', async () => {
    expect(kilnctl(['lots', 'create', 'line-7', '--max-devices', '5', '--db', metricsDb, '--token-out', join(tempDir(), 't')]).code).toBe(
      0,
    );
    const s = await scrape(server.url);
    expect(value(s, 'kiln_lot_max_devices', { lot: 'line-7' })).toBe(5);
    expect(value(s, 'kiln_lot_devices', { lot: 'line-7' })).toBe(0);
    expect(s.find((f) => f.name === 'kiln_lot_devices')?.metrics.map((m) => m.labels?.lot)).toEqual(['line-7']);
  });
});

/** `kilnctl serve`'s server in this process (so a test can reach its writer thread), its log lines kept. */
async function inProcessServer(): Promise<{ running: RunningServer; dbPath: string; lines: string[] }> {
  const { work, pkiDir } = newPki();
  const dbPath = join(work, 'kiln.db');
  const port = await freePort();
  const config = parseServeConfig({
    flags: { pkiDir, db: `sqlite:${dbPath}`, listen: `127.0.0.1:${port}`, adminListen: 'off', logLevel: 'warn' },
    env: {},
  });
  const lines: string[] = [];
  const running = await startServer(
    config,
    createJsonLogger((l) => void lines.push(l), 'warn'),
  );
  return { running, dbPath, lines };
}

describe('the writer thread dies', () => {
  let running: RunningServer | undefined;
  afterAll(async () => void (await running?.close()));

  it('fail/503 and a failing /readyz while it is down; it restarts by itself and no acknowledged certificate is lost', async () => {
    const started = await inProcessServer();
    const { dbPath, lines } = started;
    running = started.running;
    const url = running.url;
    const acked: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await sign(url);
      expect(r.status).toBe(201);
      acked.push(r.uuid);
    }
    // kill it several times in a row: each time the next requests are refused at once, then it comes back
    let refusedWhileDown = 0;
    let readyFailedWhileDown = 0;
    for (let round = 0; round < 3; round++) {
      const thread = running.writerThreadForTests();
      expect(thread).toBeDefined();
      await thread!.terminate();
      const [r, ready] = await Promise.all([sign(url), readyz(url)]);
      if (r.status === 201) acked.push(r.uuid);
      else {
        expect(r.status).toBe(503);
        expect(r.body).toBe('device registry is unavailable; try again\n');
        refusedWhileDown++;
      }
      if (ready.status === 503) {
        expect(ready.body.checks.writer).toBe('failing');
        readyFailedWhileDown++;
      }
      await until('the writer to come back', async () => ((await readyz(url)).status === 200 ? true : undefined));
      const after = await sign(url);
      expect(after.status).toBe(201);
      acked.push(after.uuid);
    }
    expect(refusedWhileDown).toBeGreaterThan(0);
    expect(readyFailedWhileDown).toBeGreaterThan(0);
    expect(lines.join('')).toMatch(/"event":"writer_down"/);
    expect(lines.join('')).toMatch(/"event":"writer_up","restarts":3/);
    await running.close();
    running = undefined;
    const inRegistry = registered(dbPath);
    for (const uuid of acked) expect(inRegistry.has(uuid), uuid).toBe(true);
  });
});

describe('the registry file is deleted under the server', () => {
  let server: ServerProcess;
  afterAll(async () => void (await server?.stop()));

  it('fail/every /sign is 503 after it, /readyz names the registry, a loud log line; no 201 goes into the void', async () => {
    const { work, pkiDir } = newPki();
    const dbPath = join(work, 'kiln.db');
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${dbPath}`]);
    expect((await sign(server.url)).status).toBe(201);
    rmSync(dbPath);
    const after = await Promise.all(Array.from({ length: 10 }, () => sign(server.url)));
    expect(after.map((r) => r.status)).toEqual(Array(10).fill(503));
    const ready = await readyz(server.url);
    expect(ready.status).toBe(503);
    expect(ready.body.checks.registry).toBe('failing');
    expect(server.logs()).toMatch(/"event":"registry_file","detail":"the registry file .*kiln\.db was deleted under the running server"/);
  });

  it('fail/a writer thread restarted after the file was deleted makes no new registry: it stays down, 503', async () => {
    const { running, dbPath, lines } = await inProcessServer();
    try {
      expect((await sign(running.url)).status).toBe(201);
      rmSync(dbPath);
      await running.writerThreadForTests()!.terminate();
      await new Promise((r) => setTimeout(r, 1500));
      expect(existsSync(dbPath)).toBe(false);
      expect((await sign(running.url)).status).toBe(503);
      const ready = await readyz(running.url);
      expect(ready.status).toBe(503);
      expect(ready.body.checks.writer).toBe('failing');
      expect(lines.join('')).toMatch(/"event":"writer_down","cause":"cannot open [^"]*kiln\.db \(SQLITE_CANTOPEN\)"/);
    } finally {
      await running.close();
    }
  });

  it('fail/replaced by another file: the same', async () => {
    const { work, pkiDir } = newPki();
    const dbPath = join(work, 'kiln.db');
    const other = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${join(work, 'other.db')}`]);
    await other.stop();
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${dbPath}`]);
    expect((await sign(server.url)).status).toBe(201);
    renameSync(join(work, 'other.db'), dbPath);
    expect((await sign(server.url)).status).toBe(503);
    expect((await readyz(server.url)).body.checks.registry).toBe('failing');
    expect(server.logs()).toMatch(/was replaced under the running server/);
  });
});

describe('the disk fills up', () => {
  const mnt = join(tempDir('kiln-full-'), 'mnt');
  let mounted = false;
  let server: ServerProcess | undefined;
  afterAll(async () => {
    await server?.stop();
    if (mounted) spawnSync('umount', [mnt]);
  });

  it('fail/503 and /readyz names the disk while it is full; it recovers when space returns, nothing acknowledged is lost', async () => {
    mkdirSync(mnt);
    const m = run('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt]);
    expect(m.code, `this test mounts a 6 MiB tmpfs and needs root: ${m.stderr}`).toBe(0);
    mounted = true;
    const { pkiDir } = newPki();
    const dbPath = join(mnt, 'kiln.db');
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${dbPath}`, '--min-free-mb', '1']);
    const acked: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await sign(server.url);
      expect(r.status).toBe(201);
      acked.push(r.uuid);
    }
    // fill what is left
    spawnSync('dd', ['if=/dev/zero', `of=${join(mnt, 'filler')}`, 'bs=64k'], { stdio: 'ignore' });
    const full = await Promise.all(Array.from({ length: 20 }, () => sign(server!.url)));
    for (const r of full) if (r.status === 201) acked.push(r.uuid);
    expect(full.filter((r) => r.status === 503).length).toBeGreaterThan(0);
    expect(full.every((r) => r.status === 201 || r.status === 503)).toBe(true);
    const ready = await readyz(server.url);
    expect(ready.status).toBe(503);
    expect(ready.body.checks.disk).toBe('failing');

    rmSync(join(mnt, 'filler'));
    await until('/readyz to pass again', async () => ((await readyz(server!.url)).status === 200 ? true : undefined));
    const again = await sign(server.url);
    expect(again.status).toBe(201);
    acked.push(again.uuid);
    await server.stop();
    server = undefined;
    const inRegistry = registered(dbPath);
    for (const uuid of acked) expect(inRegistry.has(uuid), uuid).toBe(true);
  });
});

describe('another process holds the write lock', () => {
  let server: ServerProcess;
  afterAll(async () => void (await server?.stop()));

  it('fail/503 after the busy timeout, /readyz names the writer; recovers by itself when the lock goes', async () => {
    const { work, pkiDir } = newPki();
    const dbPath = join(work, 'kiln.db');
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${dbPath}`]);
    const acked: string[] = [];
    const first = await sign(server.url);
    expect(first.status).toBe(201);
    acked.push(first.uuid);
    // sqlite3 takes the write lock and keeps it for 9 s
    const holder = spawn('sqlite3', [dbPath], { stdio: ['pipe', 'ignore', 'ignore'] });
    holder.stdin.write('PRAGMA busy_timeout = 1000;\nBEGIN IMMEDIATE;\nINSERT INTO crl_state (id, number, revision) VALUES (99, 0, 0);\n');
    await new Promise((r) => setTimeout(r, 300));
    const [blocked, ready] = await Promise.all([sign(server.url), new Promise((r) => setTimeout(r, 1000)).then(() => readyz(server.url))]);
    expect(blocked.status).toBe(503);
    expect(ready.status).toBe(503);
    expect(ready.body.checks.writer).toBe('failing');
    holder.stdin.end('ROLLBACK;\n.quit\n');
    await new Promise((r) => holder.once('exit', r));
    await until('/readyz to pass again', async () => ((await readyz(server.url)).status === 200 ? true : undefined));
    const after = await sign(server.url);
    expect(after.status).toBe(201);
    acked.push(after.uuid);
    await server.stop();
    const inRegistry = registered(dbPath);
    for (const uuid of acked) expect(inRegistry.has(uuid)).toBe(true);
  });
});

describe('kilnctl db backup and verify', () => {
  let server: ServerProcess | undefined;
  afterAll(async () => void (await server?.stop()));

  it('ok/a backup taken under load holds every certificate acknowledged before it began and passes db verify; a restore serves it', async () => {
    const { work, pkiDir } = newPki();
    const dbPath = join(work, 'kiln.db');
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${dbPath}`]);
    const url = server.url;
    const acked: { uuid: string; at: number }[] = [];
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        const r = await sign(url);
        if (r.status === 201) acked.push({ uuid: r.uuid, at: Date.now() });
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, worker));
    await until('some registrations', async () => (acked.length >= 300 ? true : undefined));
    const backupFile = join(work, 'backup.db');
    const startedAt = Date.now();
    const before = acked.filter((a) => a.at < startedAt).map((a) => a.uuid);
    const backup = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(join(process.cwd(), 'bin/kilnctl'), ['db', 'backup', backupFile, '--db', `sqlite:${dbPath}`, '--json']);
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.once('exit', (code) => resolve({ code, out }));
    });
    const during = acked.length;
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await load;
    expect(backup.code).toBe(0);
    expect(acked.length).toBeGreaterThan(during - 1); // registrations went on while it ran
    const report = JSON.parse(backup.out) as { integrity: string; counts: { certificates: number } };
    expect(report.integrity).toBe('ok');
    expect(report.counts.certificates).toBeGreaterThanOrEqual(before.length);
    const inBackup = registered(backupFile);
    for (const uuid of before) expect(inBackup.has(uuid), uuid).toBe(true);
    const verify = kilnctl(['db', 'verify', backupFile]);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/integrity: {2}ok/);

    // restore: stop, put the backup in place (the old WAL goes with the old file), start
    await server.stop();
    server = undefined;
    for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) rmSync(f, { force: true });
    renameSync(backupFile, dbPath);
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${dbPath}`]);
    const show = kilnctl(['devices', 'show', before[0], '--db', `sqlite:${dbPath}`]);
    expect(show.code).toBe(0);
    expect((await sign(server.url)).status).toBe(201);
  });

  it('fail/a backup never overwrites (73); verify of a missing file is 66, of a damaged one a clear refusal', () => {
    const work = tempDir();
    const target = join(work, 'exists.db');
    writeFileSync(target, 'x');
    const r = kilnctl(['db', 'backup', target, '--db', `sqlite:${join(work, 'none.db')}`]);
    expect(r.code).toBe(73);
    expect(r.stderr).toBe(`kilnctl: ${target} exists: a backup never overwrites a file\n`);
    expect(kilnctl(['db', 'verify', join(work, 'missing.db')]).code).toBe(66);
    const damaged = kilnctl(['db', 'verify', target]);
    expect(damaged.code).not.toBe(0);
    expect(damaged.stderr.split('\n')).toHaveLength(2);
    expect(existsSync(join(work, '.exists.db.partial'))).toBe(false);
  });
});

describe('shedding load', () => {
  let server: ServerProcess;
  afterAll(async () => void (await server?.stop()));

  it('fail/past --max-in-flight: 503 with Retry-After instead of a queue', async () => {
    const { work, pkiDir } = newPki();
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${join(work, 'kiln.db')}`, '--max-in-flight', '1']);
    const answers = await Promise.all(Array.from({ length: 30 }, () => sign(server.url)));
    const shed = answers.filter((a) => a.status === 503);
    expect(answers.filter((a) => a.status === 201).length).toBeGreaterThan(0);
    expect(shed.length).toBeGreaterThan(0);
    expect(shed[0].retryAfter).toBe('1');
    expect(shed[0].body).toBe('server busy: 1 registrations in progress; try again\n');
    expect(answers.every((a) => a.status === 201 || a.status === 503)).toBe(true);
    expect(value(await scrape(server.url), 'kiln_requests_shed_total', { reason: 'overload' })).toBe(shed.length);
    await server.stop();
  });

  it('fail/past --rate-limit per client address: 429 with Retry-After', async () => {
    const { work, pkiDir } = newPki();
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${join(work, 'kiln.db')}`, '--rate-limit', '2']);
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 5; i++) {
      const r = await sign(server.url);
      statuses.push(r.status);
      if (r.status === 429) retryAfter = r.retryAfter;
    }
    expect(statuses.slice(0, 2)).toEqual([201, 201]);
    expect(statuses).toContain(429);
    expect(retryAfter).toBe('1');
  });
});

describe('docs/grafana-kiln.json', () => {
  it('ok/every series a panel queries is one the server exports', async () => {
    const { work, pkiDir } = newPki();
    const server = await startKilnctl(['--pki-dir', pkiDir, '--db', `sqlite:${join(work, 'kiln.db')}`]);
    try {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      const exported = new Set(
        [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, n, t]) =>
          t === 'histogram' ? [`${n}_bucket`, `${n}_sum`, `${n}_count`] : [n],
        ),
      );
      const dashboard = JSON.parse(readFileSync(join(process.cwd(), 'docs/grafana-kiln.json'), 'utf8')) as {
        panels: { targets: { expr: string }[] }[];
      };
      const used = new Set(dashboard.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/\bkiln_[a-z_]+/g) ?? [])));
      expect(used.size).toBeGreaterThan(10);
      for (const name of used) expect(exported.has(name), name).toBe(true);
    } finally {
      await server.stop();
    }
  });
});
