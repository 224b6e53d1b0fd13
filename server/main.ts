// Composition root: turns a ServeConfig into a running server.
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { KilnError, unreadable } from '../pki/errors.js';
import { PKI_FILES } from '../pki/factory-pki.js';
import { pemCertificates } from '../pki/certificate.js';
import { caExpiryWarning } from '../pki/profiles.js';
import { VERSION } from '../pki/version.js';
import { openPkcs11Signer } from '../pki/pkcs11/open.js';
import { isPkcs11Uri } from '../pki/pkcs11/uri.js';
import { pooledRandom } from '../pki/serial.js';
import type { Signer } from '../pki/signer.js';
import { createRequestListener } from './app.js';
import type { ServeConfig } from './config.js';
import { describeDb, openStore } from './db/open.js';
import type { Store } from './db/store.js';
import type { Logger } from './logger.js';
import { walBufferBuilt } from './db/sqlite/wal-buffer.js';
import { loadNativeEcdsa, type NativeEcdsa } from './native-ecdsa.js';
import { loadFactoryPki, signingFrom, type FactoryPki } from './pki-dir.js';
import { deliverNow, startOutboxWorker } from './outbox.js';
import { createEnrollmentGate } from './enrollment.js';
import { getRequestListener } from '@hono/node-server';
import { createAdminApi } from './admin/api.js';
import { startCrlPublisher } from './crl-publisher.js';
import { createSignService } from './sign-service.js';
import { createReadiness, selfTest } from './readiness.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createRateLimiter } from './rate-limit.js';
import { createUpstreamClient, readUpstreamToken } from './upstream.js';

export interface RunningServer {
  url: string;
  /** the admin API, when it listens */
  adminUrl?: string;
  close(): Promise<void>;
  /** Tests only: the registry's writer thread (to kill it). */
  writerThreadForTests(): import('node:worker_threads').Worker | undefined;
}

export const GATEWAY_PORT = 8443;

/** Gateway and OSTree URLs: configured, or from the DNS SANs of tls-crt. */
export function gatewayUrls(config: ServeConfig, pki: FactoryPki): { gateway: string; ostree: string } {
  const sans = pki.tls?.dnsNames ?? [];
  const gateway = config.gateway ?? (sans[0] && `https://${sans[0]}:${GATEWAY_PORT}`);
  if (!gateway) throw new KilnError('config', 'no --gateway given and the PKI has no tls-crt with a DNS SAN to derive it from');
  const ostree = config.ostree ?? (sans[1] ? `https://${sans[1]}:${GATEWAY_PORT}` : gateway);
  return { gateway, ostree };
}

async function loadCaSigner(config: ServeConfig, ecdsa: NativeEcdsa): Promise<Signer> {
  if (isPkcs11Uri(config.caKey)) return openPkcs11Signer(config.caKey, (p) => readFileSync(p, 'utf8'));
  let pem: string;
  try {
    pem = readFileSync(config.caKey, 'utf8');
  } catch (err) {
    // the usual first mistake: no PKI yet
    const noPki = (err as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(join(config.pkiDir, PKI_FILES.localCert));
    const hint = noPki
      ? ` (${config.pkiDir} holds no PKI: create one with kilnctl pki init --dir ${config.pkiDir} --factory NAME --gateway-dns HOST, or ./scripts/serve for a dev PKI)`
      : '';
    throw unreadable('CA key', config.caKey, err, hint);
  }
  return ecdsa.pemSigner(pem);
}

export async function startServer(config: ServeConfig, logger: Logger): Promise<RunningServer> {
  // everything that can fail on configuration, before anything holds a thread or a file
  const upstreamToken = config.upstream ? readUpstreamToken(config.upstream.tokenFile) : undefined;
  const bootstrapCas = readBootstrapCas(config.estBootstrapCa);
  const ecdsa = loadNativeEcdsa();
  const signer = await loadCaSigner(config, ecdsa);
  let pki: FactoryPki;
  let urls: { gateway: string; ostree: string };
  let store: Store;
  let metrics: Metrics | undefined;
  try {
    pki = loadFactoryPki(config.pkiDir, signer);
    urls = gatewayUrls(config, pki);
    await selfTest(signer);
    store = await openStore(config.db, {
      writer: 'worker',
      minFreeBytes: config.minFreeMb * 1024 * 1024,
      // a writer thread that stops is started again; every one of these is worth a loud line
      writerEvents: {
        down: (cause, restartInMs) => logger.error('writer_down', { cause, restart_in_ms: restartInMs }),
        up: (restarts) => (logger.notice('writer_up', { restarts }), metrics?.writerRestart()),
        batch: (size) => metrics?.batch(size),
        fileProblem: (detail) =>
          logger.error('registry_file', {
            detail,
            action: 'every registration is refused (503) until the server is restarted on a registry file',
          }),
      },
    });
  } catch (err) {
    await signer.close();
    throw err;
  }
  const upstreamClient =
    config.upstream && upstreamToken
      ? createUpstreamClient({ api: config.upstream.api, token: upstreamToken, group: config.upstream.group, timeoutMs: 10_000 })
      : undefined;
  const clock = (): Date => new Date();
  const worker =
    upstreamClient && config.upstream && config.upstream.mode === 'outbox'
      ? startOutboxWorker({
          store,
          upstream: upstreamClient,
          logger,
          clock,
          policy: { baseMs: config.upstream.retryBaseMs, pollMs: Math.min(1000, config.upstream.retryBaseMs) },
        })
      : undefined;

  const signService = createSignService({
    ...signingFrom(pki),
    store,
    settings: {
      ...urls,
      validityDays: config.validityDays,
      serialFromUuid: config.serialFromUuid,
      rejectReregistration: config.rejectReregistration,
      rekey: config.rekey,
      crlUrl: config.crl.url,
    },
    clock,
    random: pooledRandom(),
    ecVerifier: ecdsa.verifier,
    enrollment: config.enrollment === 'token' ? createEnrollmentGate('token', store, config.authHeader) : undefined,
    upstream:
      upstreamClient && config.upstream
        ? {
            mode: config.upstream.mode,
            group: config.upstream.group,
            deliverNow: (entry) => deliverNow(store, upstreamClient, logger, entry, clock),
            queued: () => worker?.kick(),
          }
        : undefined,
  });
  // the CRL: made now (a failure is logged and retried, not fatal), kept current from here on
  const crl = await startCrlPublisher(
    { store, ca: pki.local, logger, clock },
    { periodMs: config.crl.periodHours * 3_600_000, file: config.crl.file },
  );
  const caState = (): { not_after: string; warning?: string } => {
    const warning = caExpiryWarning(pki.local.cert.notAfter, config.validityDays, clock());
    return { not_after: pki.local.cert.notAfter.toISOString(), ...(warning ? { warning } : {}) };
  };
  metrics = config.metrics
    ? createMetrics({
        version: VERSION,
        store,
        keyState: () => signer.describe(),
        certificates: { localCa: pki.local.cert.notAfter, root: pki.root.notAfter },
        clock,
      })
    : undefined;
  const readiness = createReadiness({ store, signer, caNotAfter: pki.local.cert.notAfter, marginDays: config.caExpiryMarginDays, clock });
  const listener = createRequestListener({
    metrics,
    readiness,
    maxInFlight: config.maxInFlight,
    rateLimiter: config.rateLimit > 0 ? createRateLimiter(config.rateLimit) : undefined,
    crl,
    caState,
    est: { ca: pki.local, rootPem: pki.rootPem, bootstrapCas, clock },
    signService,
    store,
    signer,
    logger,
    authHeader: config.authHeader,
    upstreamState: config.upstream ? () => ({ mode: config.upstream!.mode, ...(worker?.state() ?? { state: 'running' }) }) : undefined,
  });

  // a device renews over EST with its certificate as the TLS client certificate: ask for one, and judge it per route
  const tls = config.tls
    ? { ...readTls(config.tls), clientCas: [pki.local.certPem, pki.rootPem, ...bootstrapCas.map((c) => c.toString())] }
    : undefined;
  // what started before the listeners must stop if one cannot listen, or its timers keep the process alive
  const abandon = async (): Promise<void> => {
    crl.stop();
    await worker?.stop();
    await store.close();
    await signer.close();
  };
  const server = await listen(listener, config.listen, '', tls).catch(async (err: unknown) => {
    await abandon();
    throw err;
  });
  const adminServer = config.adminListen
    ? await listen(
        getRequestListener(createAdminApi({ store, logger, clock, readiness }).fetch),
        config.adminListen,
        '--admin-listen ',
      ).catch(async (err: unknown) => {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await abandon();
        throw err;
      })
    : undefined;
  const adminAddr = adminServer?.address() as AddressInfo | undefined;
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${tls ? 'https' : 'http'}://${host}:${addr.port}`;
  logger.notice('started', {
    version: VERSION,
    url,
    admin_url: adminAddr ? `http://${adminAddr.family === 'IPv6' ? `[${adminAddr.address}]` : adminAddr.address}:${adminAddr.port}` : 'off',
    factory: pki.local.factory,
    gateway: urls.gateway,
    ostree: urls.ostree,
    db: config.db.kind,
    // where, the password hidden
    registry: describeDb(config.db),
    // who may register: open is the reference's behaviour (any valid CSR)
    enrollment: config.enrollment,
    upstream: config.upstream ? config.upstream.mode : 'detached',
    log_level: config.logLevel,
    key: signer.describe().backend,
    ecdsa: ecdsa.backend,
    verify_and_sign: signer.verifyAndSign !== undefined,
    // the SQLite writer thread's WAL write buffer (native/walbuf.c)
    wal_buffer: config.db.kind === 'sqlite' && walBufferBuilt(),
  });
  const caWarning = caState().warning;
  if (caWarning) logger.warn('ca_expiring', { detail: caWarning });
  if (config.enrollment === 'open')
    logger.warn('enrollment_open', {
      detail:
        'any device that reaches /sign with a valid CSR gets a certificate; use --enrollment token and production lots to decide who may register',
    });

  return {
    url,
    adminUrl: adminAddr
      ? `http://${adminAddr.family === 'IPv6' ? `[${adminAddr.address}]` : adminAddr.address}:${adminAddr.port}`
      : undefined,
    writerThreadForTests: () => store.writerThreadForTests(),
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (adminServer) await new Promise<void>((resolve) => adminServer.close(() => resolve()));
      await worker?.stop();
      crl.stop();
      await store.close();
      await signer.close();
    },
  };
}

/** The CAs whose certificates may bootstrap an EST enrollment (PEM bundle), read at start-up. */
function readBootstrapCas(path: string | undefined): X509Certificate[] {
  if (path === undefined) return [];
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw unreadable('EST bootstrap CA file', path, err);
  }
  const cas = pemCertificates(text).map((der) => {
    try {
      return new X509Certificate(der);
    } catch (err) {
      throw new KilnError('config', `EST bootstrap CA file ${path} holds a certificate that does not parse`, { cause: err });
    }
  });
  if (!cas.length) throw new KilnError('config', `EST bootstrap CA file ${path} holds no PEM certificate`);
  return cas;
}

/** The HTTPS certificate chain and key, read at start-up (a missing file is a configuration error). */
function readTls(t: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  const read = (what: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw unreadable(what, path, err);
    }
  };
  return { cert: read('TLS certificate', t.cert), key: read('TLS key', t.key) };
}

function listen(
  listener: RequestListener,
  at: { host: string; port: number },
  what = '',
  tls?: { cert: Buffer; key: Buffer; clientCas?: string[] },
): Promise<Server> {
  return new Promise((resolve, reject) => {
    let server: Server;
    try {
      server = tls
        ? createHttpsServer(
            {
              cert: tls.cert,
              key: tls.key,
              minVersion: 'TLSv1.2',
              // a client certificate is asked for, never required: /sign and first enrollment go without
              ...(tls.clientCas ? { requestCert: true, rejectUnauthorized: false, ca: tls.clientCas } : {}),
            },
            listener,
          )
        : createServer(listener);
    } catch (err) {
      return reject(new KilnError('config', `the TLS certificate and key do not work together: ${(err as Error).message}`, { cause: err }));
    }
    server.listen(at.port, at.host, () => resolve(server));
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new KilnError('unavailable', `cannot listen on ${what}${at.host}:${at.port}: ${err.code ?? err.message}`, { cause: err })),
    );
  });
}
