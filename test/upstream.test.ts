// Partially detached mode against a real stand-in upstream device API.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { openSqliteStore } from '../server/db/sqlite/store.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceCsr, FACTORY, lmpBody, tempDir } from './helpers/pki.js';
import { kilnctl, kilnctlAsync, startKilnctl, type ServerProcess } from './helpers/proc.js';
import { startStandIn, type StandIn } from './helpers/stand-in.js';

interface Setup {
  work: string;
  db: string;
  args: (extra?: string[]) => string[];
}

function setup(upstreamUrl: string): Setup {
  const work = tempDir();
  kilnctl(['pki', 'init', '--dir', join(work, 'pki'), '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']);
  writeFileSync(join(work, 'token'), 'up-token-1\n', { mode: 0o600 });
  const db = `sqlite:${join(work, 'kiln.db')}`;
  // admin commands open an existing registry only; the server would have created it
  void openSqliteStore(join(work, 'kiln.db')).close();
  return {
    work,
    db,
    args: (extra = []) => [
      '--pki-dir',
      join(work, 'pki'),
      '--db',
      db,
      '--upstream-api',
      upstreamUrl,
      '--upstream-token-file',
      join(work, 'token'),
      '--upstream-retry-base-ms',
      '50',
      ...extra,
    ],
  };
}

async function register(url: string, name?: string): Promise<{ status: number; text: string; ms: number; uuid: string }> {
  const d = await deviceCsr();
  const t0 = performance.now();
  const res = await request(`${url}/sign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: lmpBody({ csr: d.csrPem, uuid: d.uuid, ...(name ? { name } : {}) }),
  });
  return { status: res.statusCode, text: await res.body.text(), ms: performance.now() - t0, uuid: d.uuid };
}

const status = (
  db: string,
): { pending: number; failed: number; delivered: number; oldestPendingAgeSeconds: number | null; paused: { reason: string } | null } =>
  JSON.parse(kilnctl(['upstream', 'status', '--db', db, '--json']).stdout);

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const puts = (s: StandIn) => s.seen.filter((x) => x.method === 'PUT');

describe('outbox mode (the default)', () => {
  let up: StandIn;
  beforeAll(async () => {
    up = await startStandIn();
  });
  afterAll(async () => {
    await up.close();
  });

  it('answers 201 at once and delivers the device: PUT to the API URL as written (trailing slash kept), with token, client.pem, name, group', async () => {
    up.seen.length = 0;
    up.answer(() => ({ status: 201, body: '{}' }));
    const s = setup(new URL('/ota/devices/', up.url).toString());
    const server = await startKilnctl(s.args(['--device-group', 'line-3']));
    try {
      const r = await register(server.url, 'board-7');
      expect(r.status).toBe(201);
      await until('delivery', () => status(s.db).delivered === 1);
      const put = puts(up)[0];
      expect(put.url).toBe('/ota/devices/');
      expect(put.headers['osf-token']).toBe('up-token-1');
      expect(JSON.parse(put.body)).toEqual({
        'client.pem': (JSON.parse(r.text) as Record<string, string>)['client.pem'],
        name: 'board-7',
        group: 'line-3',
      });
      await until('the delivery log line', () => /"event":"upstream_delivery".*"outcome":"created"/.test(server.logs()));
      expect(server.logs()).not.toContain('up-token-1');
    } finally {
      await server.stop();
    }
  });

  it('a hung upstream does not slow registrations; deliveries wait, with a timeout on every call', async () => {
    up.answer(() => 'hang');
    const s = setup(up.url);
    const server = await startKilnctl(s.args());
    try {
      const times: number[] = [];
      for (let i = 0; i < 20; i++) {
        const r = await register(server.url);
        expect(r.status).toBe(201);
        times.push(r.ms);
      }
      times.sort((a, b) => a - b);
      console.log(`registrations with a hung upstream: p50 ${times[10].toFixed(1)} ms, max ${times[19].toFixed(1)} ms`);
      expect(times[10]).toBeLessThan(500);
      expect(status(s.db)).toMatchObject({ pending: 20, delivered: 0 });
    } finally {
      await server.stop();
    }
  });

  it('retries 5xx and dropped connections with back-off; a 409 counts as delivered', async () => {
    up.seen.length = 0;
    let n = 0;
    up.answer(() => (++n === 1 ? { status: 503, body: 'busy' } : n === 2 ? 'drop' : { status: 409, body: '{"detail":"exists"}' }));
    const s = setup(up.url);
    const server = await startKilnctl(s.args());
    try {
      expect((await register(server.url)).status).toBe(201);
      await until('delivery after retries', () => status(s.db).delivered === 1);
      expect(puts(up).length).toBe(3);
      const [row] = JSON.parse(kilnctl(['upstream', 'list', '--db', s.db, '--json']).stdout) as {
        status: string;
        attempts: number;
        lastError: string;
      }[];
      expect(row).toMatchObject({ status: 'delivered', attempts: 3, lastError: 'HTTP 409 (exists)' });
    } finally {
      await server.stop();
    }
  });

  it('a 401 stops delivery and says so loudly; the token is not hammered', async () => {
    up.seen.length = 0;
    up.answer(() => ({ status: 401, body: 'bad token' }));
    const s = setup(up.url);
    const server = await startKilnctl(s.args());
    try {
      for (let i = 0; i < 3; i++) expect((await register(server.url)).status).toBe(201);
      await until('the auth failure', () => server.logs().includes('upstream_auth_failed'));
      await new Promise((r) => setTimeout(r, 1500));
      expect(puts(up).length).toBe(1);
      const health = (await (await request(`${server.url}/healthz`)).body.json()) as { upstream: { state: string; detail: string } };
      expect(health.upstream).toMatchObject({ state: 'auth_failed', detail: 'HTTP 401: bad token' });
      const paused = status(s.db);
      expect(paused.pending).toBe(3);
      // the pause is in the registry, where the operator's commands see it
      expect(paused.paused).toMatchObject({ reason: 'HTTP 401: bad token' });
      const text = kilnctl(['upstream', 'status', '--db', s.db]).stdout;
      expect(text).toMatch(/^paused: +until \S+ \(since \S+\): HTTP 401: bad token$/m);

      // the token is fixed upstream; retry lifts the pause and the running server delivers
      up.answer(() => ({ status: 201, body: '{}' }));
      const retry = kilnctl(['upstream', 'retry', '--db', s.db]);
      expect(retry.code).toBe(0);
      expect(retry.stdout).toMatch(/^Requeued 3 deliveries/);
      await until('delivery after retry', () => status(s.db).delivered === 3);
      expect(status(s.db).paused).toBeNull();
      const rows = JSON.parse(kilnctl(['upstream', 'list', '--db', s.db, '--json']).stdout) as { attempts: number }[];
      // the attempt that met the 401 is still counted
      expect(rows.map((r) => r.attempts).sort()).toEqual([1, 1, 2]);
    } finally {
      await server.stop();
    }
  });

  it('fail/upstream retry of a UUID with no delivery exits 65 and changes nothing', async () => {
    const s = setup(up.url);
    const unknown = '00000000-0000-4000-8000-00000000abcd';
    const r = kilnctl(['upstream', 'retry', unknown, '--db', s.db]);
    expect(r.code).toBe(65);
    expect(r.stderr).toBe(`kilnctl: no upstream delivery for ${unknown}\n`);
  });

  it('nothing is lost: kill -9 with deliveries pending, restart, they are delivered', async () => {
    up.seen.length = 0;
    up.answer(() => ({ status: 503, body: 'down' }));
    const s = setup(up.url);
    const first = await startKilnctl(s.args());
    const uuids: string[] = [];
    for (let i = 0; i < 5; i++) uuids.push((await register(first.url)).uuid);
    expect(await first.stop('SIGKILL')).toBeNull();
    expect(status(s.db)).toMatchObject({ pending: 5, delivered: 0 });

    up.answer(() => ({ status: 201, body: '{}' }));
    const second = await startKilnctl(s.args());
    try {
      await until('redelivery', () => status(s.db).delivered === 5);
      const delivered = new Set(
        puts(up)
          .filter((p) => p.url === '/sign')
          .map((p) => (JSON.parse(p.body) as { name?: string }).name),
      );
      for (const u of uuids) expect(delivered.has(u)).toBe(true);
    } finally {
      await second.stop();
    }
  });
});

describe('sync mode (the reference behaviour)', () => {
  let up: StandIn;
  let s: Setup;
  let server: ServerProcess;
  beforeAll(async () => {
    up = await startStandIn();
    s = setup(up.url);
    server = await startKilnctl(s.args(['--upstream-mode', 'sync']));
  });
  afterAll(async () => {
    await server?.stop();
    await up.close();
  });

  it('201 upstream: the device gets 201 and the delivery is recorded', async () => {
    up.answer(() => ({ status: 201, body: '{}' }));
    expect((await register(server.url)).status).toBe(201);
    expect(status(s.db).delivered).toBeGreaterThanOrEqual(1);
  });

  it('409 upstream: passed on as 409 with its body', async () => {
    up.answer(() => ({ status: 409, body: '{"detail":"A device with this name already exists"}' }));
    const r = await register(server.url);
    expect(r.status).toBe(409);
    expect(r.text).toBe('{"detail":"A device with this name already exists"}\n');
  });

  it('5xx upstream: 4 attempts, then 503 "upstream unavailable" and the certificate is recorded as not delivered', async () => {
    up.seen.length = 0;
    up.answer(() => ({ status: 502, body: 'bad gateway' }));
    const r = await register(server.url);
    expect(r.status).toBe(503);
    expect(r.text).toMatch(/^upstream device API unavailable; the certificate was not delivered/);
    expect(puts(up).length).toBe(4);
    const failed = JSON.parse(kilnctl(['upstream', 'list', '--failed', '--db', s.db, '--json']).stdout) as { uuid: string }[];
    expect(failed.map((f) => f.uuid)).toContain(r.uuid);
    const again = JSON.parse(kilnctl(['upstream', 'retry', r.uuid, '--db', s.db, '--json']).stdout) as { requeued: number };
    expect(again.requeued).toBe(1);
  });
});

describe('upstream configuration errors', () => {
  it.each([
    [
      'missing token file',
      ['--upstream-token-file', '/nonexistent/token'],
      /^kilnctl: cannot read the upstream token file \/nonexistent\/token: no such file or directory$/,
    ],
    [
      'no token file at all',
      [],
      /^kilnctl: --upstream-api http\S+ needs an upstream token file too \(--upstream-token-file or KILN_UPSTREAM_TOKEN_FILE/,
    ],
    [
      'bad mode',
      ['--upstream-token-file', '/dev/null', '--upstream-mode', 'later'],
      /^kilnctl: --upstream-mode later: expected sync or outbox$/,
    ],
  ])('fail/%s: exit 78 at start-up, one line', (_n, extra, message) => {
    const work = tempDir();
    kilnctl(['pki', 'init', '--dir', join(work, 'pki'), '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']);
    const r = kilnctl([
      'serve',
      '--pki-dir',
      join(work, 'pki'),
      '--db',
      `sqlite:${join(work, 'k.db')}`,
      '--listen',
      '127.0.0.1:0',
      '--upstream-api',
      'http://127.0.0.1:1/ota/devices/',
      ...extra,
    ]);
    expect(r.code).toBe(78);
    expect(r.stderr.trim()).toMatch(message);
  });
});

describe('deny-list sync', () => {
  it('pulls every page of the upstream deny-list; delete-denied --upstream deletes it there too', async () => {
    const up = await startStandIn();
    const entries = Array.from({ length: 105 }, (_, i) => ({
      uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      name: `d${i}`,
      owner: 'o',
    }));
    up.answer((req) => {
      const u = new URL(req.url, 'http://x');
      if (req.method === 'GET' && u.pathname === `/ota/factories/${FACTORY}/denied-devices/`) {
        const page = Number(u.searchParams.get('page'));
        const limit = Number(u.searchParams.get('limit'));
        return {
          status: 200,
          body: JSON.stringify({ 'denied-devices': entries.slice((page - 1) * limit, page * limit), total: entries.length }),
        };
      }
      if (req.method === 'DELETE') return { status: 204, body: '' };
      return { status: 404, body: 'no' };
    });
    try {
      const s = setup(up.url);
      const sync = await kilnctlAsync([
        'devices',
        'sync-denied',
        '--db',
        s.db,
        '--upstream-api',
        up.url,
        '--upstream-token-file',
        join(s.work, 'token'),
        '--pki-dir',
        join(s.work, 'pki'),
        '--json',
      ]);
      expect(sync.stderr).toBe('');
      expect(JSON.parse(sync.stdout).upstream).toBe(105);
      expect(up.seen.filter((x) => x.method === 'GET').map((x) => new URL(x.url, 'http://x').searchParams.get('page'))).toEqual(['1', '2']);
      const local = JSON.parse(kilnctl(['devices', 'list-denied', '--db', s.db, '--limit', '1000', '--json']).stdout) as unknown[];
      expect(local).toHaveLength(105);

      const del = await kilnctlAsync([
        'devices',
        'delete-denied',
        entries[3].uuid,
        '--upstream',
        '--db',
        s.db,
        '--upstream-api',
        up.url,
        '--upstream-token-file',
        join(s.work, 'token'),
        '--factory',
        FACTORY,
      ]);
      expect(del.code).toBe(0);
      const d = up.seen.find((x) => x.method === 'DELETE')!;
      expect(d.url).toBe(`/ota/factories/${FACTORY}/denied-devices/${entries[3].uuid}/`);
      expect(d.headers['osf-token']).toBe('up-token-1');
    } finally {
      await up.close();
    }
  });
});
