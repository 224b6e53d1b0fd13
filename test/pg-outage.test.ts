// A PostgreSQL outage (issue 20): /sign answers 503 (devices retry), /readyz names the
// registry, and the server recovers by itself when the database returns. The outage is
// a real TCP proxy in front of the real server, closed and opened again by the test.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pgSchema, PG_BASE, type PgSchema } from './helpers/pg.js';
import { deviceCsr, FACTORY, lmpBody, tempDir } from './helpers/pki.js';
import { kilnctl, startKilnctl, type ServerProcess } from './helpers/proc.js';

/** A TCP proxy to the database that the test can take down and bring back on the same port. */
async function dbProxy(target: { host: string; port: number }): Promise<{ port: number; down(): Promise<void>; up(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let server: Server;
  let port = 0;
  const listen = (): Promise<void> =>
    new Promise((resolve) => {
      server = createServer((client) => {
        const db = createConnection(target);
        sockets.add(client).add(db);
        client.pipe(db).pipe(client);
        const drop = (): void => {
          client.destroy();
          db.destroy();
          sockets.delete(client);
          sockets.delete(db);
        };
        client.on('error', drop).on('close', drop);
        db.on('error', drop).on('close', drop);
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  await listen();
  return {
    port,
    down: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
    up: listen,
  };
}

async function sign(url: string): Promise<{ status: number; body: string }> {
  const d = await deviceCsr();
  const res = await fetch(`${url}/sign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: lmpBody({ csr: d.csrPem, uuid: d.uuid }),
    signal: AbortSignal.timeout(20_000),
  });
  return { status: res.status, body: await res.text() };
}

let pg: PgSchema;
let server: ServerProcess | undefined;
afterAll(async () => {
  await server?.stop();
  await pg?.drop();
});

describe('PostgreSQL goes away and comes back', () => {
  it('fail/503 and a failing /readyz while it is away; it recovers without a restart', async () => {
    pg = await pgSchema();
    const base = new URL(PG_BASE);
    const proxy = await dbProxy({ host: base.hostname, port: Number(base.port || 5432) });
    const via = new URL(pg.url);
    via.port = String(proxy.port);
    const work = tempDir('kiln-outage-');
    const pkiDir = join(work, 'pki');
    expect(kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.acme.test']).code).toBe(0);
    server = await startKilnctl(['--pki-dir', pkiDir, '--db', via.toString()]);
    expect((await sign(server.url)).status).toBe(201);

    await proxy.down();
    const during = await Promise.all([sign(server.url), sign(server.url)]);
    expect(during).toEqual([
      { status: 503, body: 'device registry is unavailable; try again\n' },
      { status: 503, body: 'device registry is unavailable; try again\n' },
    ]);
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: Record<string, string> }).checks.registry).toBe('failing');
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);

    await proxy.up();
    let after = { status: 0, body: '' };
    for (let i = 0; i < 50 && after.status !== 201; i++) {
      after = await sign(server.url);
      if (after.status !== 201) await new Promise((r) => setTimeout(r, 200));
    }
    expect(after.status).toBe(201);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    // the log names the database without its password, and the server never stopped
    expect(server.logs()).toMatch(/"db":"postgres","registry":"postgres:\/\/postgres@127\.0\.0\.1:\d+\/test/);
    const [{ n }] = await pg.query<{ n: string }>('SELECT count(*) AS n FROM certificates');
    expect(Number(n)).toBe(2);
  }, 60_000);
});
