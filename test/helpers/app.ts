// The server's request listener on a real 127.0.0.1 socket (and the hono app for
// in-process calls to the other routes), over a real PKI and a real (in-memory
// or file) SQLite registry.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, createRequestListener } from '../../server/app.js';
import { openSqliteStore } from '../../server/db/sqlite/store.js';
import type { Store } from '../../server/db/store.js';
import { createJsonLogger } from '../../server/logger.js';
import { loadNativeEcdsa } from '../../server/native-ecdsa.js';
import { loadFactoryPki, signingFrom, type FactoryPki } from '../../server/pki-dir.js';
import { createEnrollmentGate } from '../../server/enrollment.js';
import { createSignService, type SignSettings } from '../../server/sign-service.js';
import { makePkiDir } from './pki.js';

export interface TestApp {
  /** POST /sign over HTTP */
  /** the POST /sign URL on 127.0.0.1 */
  url: string;
  request: (body: string, init?: { contentType?: string | null; token?: string | null }) => Promise<Response>;
  app: ReturnType<typeof createApp>;
  store: Store;
  pki: FactoryPki;
  pkiDir: string;
  logLines: () => Record<string, unknown>[];
  rawLogs: () => string;
}

export async function makeTestApp(
  settings: Partial<SignSettings> = {},
  opts: { pkiDir?: string; dbPath?: string; enrollment?: 'open' | 'token' } = {},
): Promise<TestApp> {
  const pkiDir = opts.pkiDir ?? (await makePkiDir());
  const ecdsa = loadNativeEcdsa();
  const signer = ecdsa.pemSigner(readFileSync(join(pkiDir, 'local-ca.key')));
  const pki = loadFactoryPki(pkiDir, signer);
  const store = openSqliteStore(opts.dbPath ?? ':memory:');
  let logs = '';
  const logger = createJsonLogger((l) => (logs += l));
  const signService = createSignService({
    ...signingFrom(pki),
    store,
    settings: {
      gateway: 'https://gw.acme.test:8443',
      ostree: 'https://ostree.acme.test:8443',
      validityDays: 7300,
      serialFromUuid: false,
      rejectReregistration: false,
      rekey: 'deny',
      ...settings,
    },
    clock: () => new Date(),
    random: randomBytes,
    ecVerifier: ecdsa.verifier,
    enrollment: opts.enrollment === 'token' ? createEnrollmentGate('token', store, 'OSF-TOKEN') : undefined,
  });
  const deps = { signService, store, signer, logger, clientAddress: () => '192.0.2.10' };
  const app = createApp(deps);
  const server = createServer(createRequestListener(deps));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sign`;
  return {
    app,
    store,
    pki,
    pkiDir,
    url,
    request: async (body, init = {}) => {
      const headers: Record<string, string> = {};
      if (init.token !== null) headers['OSF-TOKEN'] = init.token ?? 'na';
      if (init.contentType !== null) headers['Content-Type'] = init.contentType ?? 'application/json';
      return fetch(url, { method: 'POST', headers, body });
    },
    rawLogs: () => logs,
    logLines: () =>
      logs
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
