// The admin API (issue 15): bearer tokens with roles over every route, the audit log,
// the OpenAPI document, and kilnctl giving the same results over --server as on --db.
import Database from 'better-sqlite3';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN_PREFIX, createAdminApi, ROUTES } from '../server/admin/api.js';
import { openSqliteStore } from '../server/db/sqlite/store.js';
import type { AdminRole, Store } from '../server/db/store.js';
import { silentLogger } from '../server/logger.js';
import { FACTORY, tempDir } from './helpers/pki.js';
import { registerAt, startSite } from './helpers/site.js';
import { kilnctl, type ServerProcess } from './helpers/proc.js';

const ROLES: AdminRole[] = ['viewer', 'operator', 'admin'];
const RANK: Record<AdminRole, number> = { viewer: 0, operator: 1, admin: 2 };

async function token(store: Store, name: string, role: AdminRole): Promise<string> {
  const t = ADMIN_TOKEN_PREFIX + randomBytes(32).toString('base64url');
  await store.createAdminToken({ name, role, tokenSha256: createHash('sha256').update(t).digest('hex'), createdAt: new Date() });
  return t;
}

/** A request each route accepts when the role allows it (fresh targets, so repeats succeed too). */
async function sampleRequest(store: Store, method: string, path: string): Promise<{ path: string; body?: unknown }> {
  const uuid = randomUUID();
  const registered = async (): Promise<string> => {
    const u = randomUUID();
    await store.recordIssuance(
      {
        serial: randomBytes(16).toString('hex'),
        uuid: u,
        subject: `CN=${u}, OU=${FACTORY}`,
        hardwareId: 'hw',
        name: u,
        production: false,
        notBefore: new Date(),
        notAfter: new Date(Date.now() + 1000),
        pem: 'PEM',
        issuedAt: new Date(),
        clientAddress: '127.0.0.1',
        requestId: 'r',
        keySha256: randomUUID(),
      },
      { rejectReregistration: false, rekey: 'allow' },
    );
    return u;
  };
  const lot = async (): Promise<string> => {
    const name = `lot-${randomUUID().slice(0, 8)}`;
    await store.createLot({
      name,
      tokenSha256: randomBytes(32).toString('hex'),
      createdAt: new Date(),
      expiresAt: null,
      maxDevices: null,
      hwidPattern: null,
      deviceGroup: null,
      production: 'any',
      approval: 'manual',
    });
    return name;
  };
  const pending = async (): Promise<string> => {
    const l = await lot();
    await store.notePending({ uuid, keySha256: 'k', hardwareId: 'hw', name: 'n', clientAddress: '127.0.0.1', lot: l }, new Date());
    return uuid;
  };
  switch (`${method} ${path}`) {
    case 'get /api/v1/devices/{uuid}':
      return { path: `/api/v1/devices/${await registered()}` };
    case 'post /api/v1/devices/deny':
      return { path, body: { uuids: [uuid], reason: 'test' } };
    case 'post /api/v1/devices/delete':
    case 'post /api/v1/devices/allow-rekey':
      return { path, body: { uuids: [await registered()], reason: 'test' } };
    case 'post /api/v1/devices/revoke':
      return { path, body: { uuids: [await registered()], reason: 'keyCompromise' } };
    case 'post /api/v1/devices/preauthorize':
      return { path, body: { rows: [{ uuid }] } };
    case 'post /api/v1/denied/remove':
      await store.deny([uuid], 'x', new Date());
      return { path, body: { uuids: [uuid] } };
    case 'get /api/v1/lots/{name}':
      return { path: `/api/v1/lots/${await lot()}` };
    case 'post /api/v1/lots':
      return { path, body: { name: `lot-${randomUUID().slice(0, 8)}`, maxDevices: 5 } };
    case 'post /api/v1/lots/{name}/revoke':
      return { path: `/api/v1/lots/${await lot()}/revoke` };
    case 'post /api/v1/lots/{name}/rotate-token':
      return { path: `/api/v1/lots/${await lot()}/rotate-token` };
    case 'post /api/v1/approvals/approve':
    case 'post /api/v1/approvals/reject':
      return { path, body: { uuids: [await pending()] } };
    case 'post /api/v1/upstream/retry':
      return { path, body: {} };
    default:
      return { path };
  }
}

describe('admin API roles, in-process over every route', () => {
  let store: Store;
  let app: ReturnType<typeof createAdminApi>;
  const tokens = {} as Record<AdminRole | 'revoked', string>;
  beforeAll(async () => {
    store = openSqliteStore(join(tempDir(), 'kiln.db'));
    app = createAdminApi({ store, logger: silentLogger });
    for (const r of ROLES) tokens[r] = await token(store, `t-${r}`, r);
    tokens.revoked = await token(store, 't-revoked', 'admin');
    await store.revokeAdminToken('t-revoked', new Date());
  });
  afterAll(async () => {
    await store.close();
  });

  const call = (method: string, path: string, bearer?: string, body?: unknown) =>
    app.request(path, {
      method: method.toUpperCase(),
      headers: {
        ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? (method === 'post' ? '{}' : undefined) : JSON.stringify(body),
    });

  it('ok/the route table covers devices, deny-list, lots, approvals, pre-authorization, the outbox and the audit log', () => {
    const paths = ROUTES.map((r) => `${r.method} ${r.path}`);
    expect(paths.length).toBeGreaterThanOrEqual(20);
    for (const p of ['/devices', '/denied', '/lots', '/approvals', '/devices/preauthorize', '/upstream/deliveries', '/audit'])
      expect(paths.some((x) => x.endsWith(`/api/v1${p}`))).toBe(true);
  });

  it('ok/each role can do exactly what it should; no token or a revoked one is 401', async () => {
    const outcomes: string[] = [];
    for (const r of ROUTES) {
      for (const who of [undefined, 'revoked', ...ROLES] as const) {
        const req = await sampleRequest(store, r.method, r.path);
        const res = await call(r.method, req.path, who ? tokens[who] : undefined, req.body);
        const body = (await res.json()) as { code?: string };
        const want = who === undefined || who === 'revoked' ? 401 : RANK[who] < RANK[r.role] ? 403 : 200;
        outcomes.push(
          `${r.method} ${r.path} ${who ?? 'none'}: ${res.status}${res.status === want ? '' : ` (want ${want}, ${JSON.stringify(body)})`}`,
        );
      }
    }
    expect(outcomes.filter((o) => o.includes('want'))).toEqual([]);
  });

  it('fail/invalid input is a 400 with a one-line reason', async () => {
    const res = await call('post', '/api/v1/devices/deny', tokens.operator, { uuids: ['nope'] });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'usage', error: expect.stringMatching(/^uuids\.0: a device UUID$/) });
  });

  it('ok/every change appears once in the audit log, with who, what, from where and the request id', async () => {
    const before = (await store.listAudit({ limit: 100_000, offset: 0 })).length;
    const mutations = ROUTES.filter((r) => r.method === 'post');
    const ids: string[] = [];
    for (const r of mutations) {
      const req = await sampleRequest(store, r.method, r.path);
      const res = await call(r.method, req.path, tokens.admin, req.body);
      expect(res.status, r.path).toBe(200);
      ids.push(res.headers.get('x-request-id')!);
    }
    const entries = (await store.listAudit({ limit: 100_000, offset: 0 })).slice(0, mutations.length);
    expect((await store.listAudit({ limit: 100_000, offset: 0 })).length - before).toBe(mutations.length);
    expect(entries.map((e) => e.requestId).sort()).toEqual([...ids].sort());
    for (const e of entries) {
      expect(e.actor).toBe('token:t-admin');
      expect(e.address).not.toBe('');
    }
    // the lot's token is in the answer once, never in the audit log
    expect(JSON.stringify(entries)).not.toContain('kiln_lot_');
  });

  it('ok/the OpenAPI document is generated from the routes', async () => {
    const res = await app.request('/api/v1/openapi.json');
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, { description: string }>> };
    expect(doc.openapi).toBe('3.0.3');
    for (const r of ROUTES) {
      const p = r.path.replace(/\{(\w+)\}/g, '{$1}');
      expect(doc.paths[p]?.[r.method]?.description, `${r.method} ${r.path}`).toBe(`Needs the ${r.role} role.`);
    }
  });
});

describe('the audit log refuses rewrites', () => {
  it('fail/UPDATE and DELETE on audit_log abort', async () => {
    const path = join(tempDir(), 'kiln.db');
    const store = openSqliteStore(path);
    await store.appendAudit({ at: new Date(), actor: 'x', action: 'a', target: 't', address: 'local', requestId: 'r', detail: '{}' });
    await store.close();
    const db = new Database(path);
    expect(() => db.prepare("UPDATE audit_log SET actor = 'y'").run()).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_log').run()).toThrow(/append-only/);
    db.close();
  });
});

describe('kilnctl over --server prints what it prints over --db', () => {
  let server: ServerProcess;
  let work: string;
  let db: string;
  beforeAll(async () => {
    ({ server, work, db } = await startSite());
  });
  afterAll(async () => {
    await server.stop();
  });

  it('ok/the same output both ways; mutations over the API are audited with the token name', async () => {
    const d = await registerAt(server);
    const tokenFile = join(work, 'admin.token');
    expect(kilnctl(['admin-tokens', 'create', 'ops', '--role', 'admin', '--token-out', tokenFile, '--db', db]).code).toBe(0);
    expect(readFileSync(tokenFile, 'utf8')).toMatch(/^kiln_adm_/);
    const remote = ['--server', server.adminUrl, '--token-file', tokenFile];

    // a change over the API, then the reads both ways
    const lot = kilnctl(['lots', 'create', 'line-9', '--max-devices', '3', '--token-out', join(work, 'lot.token'), ...remote]);
    expect(lot.stderr).toBe('');
    expect(lot.code).toBe(0);
    const deny = kilnctl(['devices', 'deny', randomUUID(), '--reason', 'lost', ...remote]);
    expect(deny.code).toBe(0);
    for (const args of [
      ['devices', 'list'],
      ['devices', 'show', d.uuid],
      ['devices', 'list-denied'],
      ['lots', 'list'],
      ['lots', 'show', 'line-9'],
      ['approvals', 'list', '--all'],
      ['upstream', 'status'],
      ['upstream', 'list'],
    ]) {
      for (const json of [[], ['--json']]) {
        const local = kilnctl([...args, ...json, '--db', db]);
        const over = kilnctl([...args, ...json, ...remote]);
        expect(over.stderr, args.join(' ')).toBe('');
        expect(over.stdout, args.join(' ')).toBe(local.stdout);
      }
    }
    const auditLocal = kilnctl(['audit', 'list', '--json', '--db', db]);
    const auditRemote = kilnctl(['audit', 'list', '--json', ...remote]);
    expect(auditRemote.stdout).toBe(auditLocal.stdout);
    const entries = JSON.parse(auditLocal.stdout) as { actor: string; action: string }[];
    expect(entries.map((e) => `${e.actor} ${e.action}`)).toEqual([
      'token:ops devices.deny',
      'token:ops lots.create',
      expect.stringMatching(/^local:\S+ admin-tokens\.create$/),
    ]);

    // errors keep their exit codes over the API
    expect(kilnctl(['lots', 'show', 'nope', ...remote]).code).toBe(65);
    expect(kilnctl(['lots', 'show', 'nope', '--db', db]).code).toBe(65);
    expect(kilnctl(['admin-tokens', 'revoke', 'ops', '--db', db]).code).toBe(0);
    const revoked = kilnctl(['devices', 'list', ...remote]);
    expect(revoked.code).toBe(77);
    expect(revoked.stderr).toBe('kilnctl: the admin token is not valid\n');
    expect(server.logs()).not.toContain(readFileSync(tokenFile, 'utf8').trim());
  });
});
