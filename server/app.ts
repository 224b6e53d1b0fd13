// The HTTP server's request listener: POST /sign on plain node:http
// (sign-route.ts, the hot path), and a hono app for the rest — HEAD/GET /sign,
// GET /healthz and the 404s.
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, RequestListener } from 'node:http';
import { KilnError, toKilnError } from '../pki/errors.js';
import type { Signer } from '../pki/signer.js';
import type { CrlPublisher } from './crl-publisher.js';
import type { Store } from './db/store.js';
import type { Logger } from './logger.js';
import type { SignService, SignTrace } from './sign-service.js';
import { createSignRoute, errorLine, logRequest, logServerError, socketAddress } from './sign-route.js';
import { createEstRoutes, EST_PREFIX, estErrorHeaders, type EstDeps } from './est/routes.js';
import type { Metrics, Route } from './metrics.js';
import type { RateLimiter } from './rate-limit.js';
import type { Readiness } from './readiness.js';

/** The EST routes that register a device, as metrics name them. */
function estRoute(path: string): Route | undefined {
  if (!path.startsWith(EST_PREFIX)) return undefined;
  if (path.endsWith('/simpleenroll')) return 'est_enroll';
  if (path.endsWith('/simplereenroll')) return 'est_reenroll';
  return undefined;
}

export interface AppDeps {
  signService: SignService;
  store: Store;
  signer: Signer;
  logger: Logger;
  /** Partially detached: the delivery worker's state, for /healthz. */
  upstreamState?: () => Record<string, string | undefined>;
  /** The peer address of a request; defaults to the socket's. */
  clientAddress?: (req: IncomingMessage) => string;
  /** The header carrying the device's token (default OSF-TOKEN). */
  authHeader?: string;
  /** The CRL the server publishes at GET /crl and /crl.pem. */
  crl?: CrlPublisher;
  /** The local CA's notAfter, and a warning when device certificates would outlive it. */
  caState?: () => { not_after: string; warning?: string };
  /** Prometheus metrics at GET /metrics, counted on /sign and EST. */
  metrics?: Metrics;
  /** GET /readyz. */
  readiness?: Readiness;
  /** /sign: requests served at once (503 past it) and a per-address rate (429 past it). */
  maxInFlight?: number;
  rateLimiter?: RateLimiter;
  /** EST (RFC 7030) under /.well-known/est/. */
  est?: Omit<EstDeps, 'signService' | 'store' | 'authHeader' | 'clientAddress'>;
}

type Env = { Bindings: HttpBindings; Variables: { requestId: string; trace: SignTrace } };

/** The listener for node:http's createServer. */
export function createRequestListener(deps: AppDeps): RequestListener {
  const sign = createSignRoute(deps);
  const rest = getRequestListener(createApp(deps).fetch);
  return (req, res) => {
    const url = req.url ?? '';
    if (req.method === 'POST' && (url === '/sign' || url.startsWith('/sign?'))) sign(req, res);
    else void rest(req, res);
  };
}

export function createApp(deps: AppDeps): Hono<Env> {
  const app = new Hono<Env>();
  const clientAddress = deps.clientAddress ?? socketAddress;

  app.use(async function requestLog(c, next) {
    const started = performance.now();
    const requestId = randomUUID();
    const trace: SignTrace = {};
    c.set('requestId', requestId);
    c.set('trace', trace);
    await next();
    c.header('X-Request-Id', requestId);
    const client = c.env?.incoming ? clientAddress(c.env.incoming) : 'unknown';
    logRequest(deps.logger, { requestId, method: c.req.method, path: c.req.path, status: c.res.status, started, client, trace });
    const route = deps.metrics && estRoute(c.req.path);
    if (route) deps.metrics!.request(route, c.res.status, trace.code, (performance.now() - started) / 1000, trace);
  });

  app.onError((err, c) => {
    const e = toKilnError(err);
    logServerError(deps.logger, c.get('requestId'), e);
    if (c.req.path.startsWith(EST_PREFIX)) estErrorHeaders(c, e);
    return plainError(c, e);
  });
  app.notFound((c) => plainError(c, new KilnError('not_found', `no route for ${c.req.method} ${c.req.path}`)));

  app.get('/sign', (c) => c.text('Kiln device registration: POST a device CSR as JSON to this URL\n'));

  app.get('/healthz', async (c) => {
    let db = 'ok';
    try {
      await deps.store.ping();
    } catch {
      db = 'unavailable';
    }
    const described = deps.signer.describe();
    const ok = db === 'ok' && described.state === 'ready';
    // token labels and PKCS#11 return codes are for the admin listener (/api/v1/readyz), not the device network
    const key = { backend: described.backend, state: described.state === 'ready' ? 'ready' : 'failing' };
    const upstream = deps.upstreamState?.();
    const crl = deps.crl?.state();
    const ca = deps.caState?.();
    return c.json(
      { status: ok ? 'ok' : 'degraded', db, key, ...(ca ? { ca } : {}), ...(upstream ? { upstream } : {}), ...(crl ? { crl } : {}) },
      // liveness: the process serves; whether it may take registrations is /readyz
      200,
    );
  });

  // readiness: each check named; the details (paths, key states) are on the admin listener's /api/v1/readyz
  app.get('/readyz', async (c) => {
    if (!deps.readiness) return c.json({ status: 'ready', checks: {} });
    const r = await deps.readiness.check();
    const checks = Object.fromEntries(r.checks.map((k) => [k.name, k.ok ? 'ok' : 'failing']));
    return c.json({ status: r.ok ? 'ready' : 'not_ready', checks }, r.ok ? 200 : 503);
  });

  app.get('/metrics', async (c) => {
    if (!deps.metrics) throw new KilnError('not_found', 'metrics are off (--metrics false)');
    c.header('Content-Type', deps.metrics.registry.contentType);
    return c.body(await deps.metrics.registry.metrics());
  });

  // the CRL of the local CA (RFC 5280 v2): DER for gateways and clients, PEM for people and files
  const crlOr503 = () => {
    const crl = deps.crl?.current();
    if (!crl)
      throw new KilnError(deps.crl ? 'unavailable' : 'not_found', deps.crl ? 'no CRL yet; try again' : 'this server publishes no CRL');
    return crl;
  };
  app.get('/crl', (c) => {
    const crl = crlOr503();
    c.header('Content-Type', 'application/pkix-crl');
    c.header('Cache-Control', `max-age=${Math.max(0, Math.floor((crl.nextUpdate.getTime() - Date.now()) / 2000))}`);
    return c.body(new Uint8Array(crl.der));
  });
  app.get('/crl.pem', (c) => {
    const crl = crlOr503();
    c.header('Content-Type', 'application/x-pem-file');
    return c.body(crl.pem);
  });

  if (deps.est)
    app.route(
      '/',
      createEstRoutes({
        ...deps.est,
        signService: deps.signService,
        store: deps.store,
        authHeader: deps.authHeader ?? 'OSF-TOKEN',
        clientAddress: (c) => (c.env?.incoming ? clientAddress(c.env.incoming) : 'unknown'),
      }),
    );

  return app;
}

function plainError(c: Context<Env>, e: KilnError): Response {
  const line = errorLine(e);
  c.get('trace').reason = line.trimEnd();
  c.get('trace').code = e.code;
  return c.text(line, e.httpStatus as 400);
}
