// The HTTP app: POST /sign, HEAD/GET /sign, GET /healthz. Built from its
// dependencies so tests call app.request() in-process.
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { randomUUID } from 'node:crypto';
import { KilnError, toKilnError } from '../pki/errors.js';
import type { Signer } from '../pki/signer.js';
import type { Store } from './db/store.js';
import type { Logger } from './logger.js';
import type { SignService, SignTrace } from './sign-service.js';

export const MAX_BODY_BYTES = 64 * 1024;

export interface AppDeps {
  signService: SignService;
  store: Store;
  signer: Signer;
  logger: Logger;
  /** Partially detached: the delivery worker's state, for /healthz. */
  upstreamState?: () => Record<string, string | undefined>;
  /** The peer address of a request; tests run without a socket. */
  clientAddress?: (c: Context) => string;
}

type Env = { Variables: { requestId: string; client: string; trace: SignTrace } };

export function createApp(deps: AppDeps): Hono<Env> {
  const app = new Hono<Env>();
  const clientAddress = deps.clientAddress ?? (() => 'unknown');

  app.use(async function requestLog(c, next) {
    const started = performance.now();
    const requestId = randomUUID();
    const trace: SignTrace = {};
    const client = clientAddress(c);
    c.set('requestId', requestId);
    c.set('client', client);
    c.set('trace', trace);
    await next();
    c.header('X-Request-Id', requestId);
    deps.logger.info('request', {
      request_id: requestId,
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      latency_ms: Math.round((performance.now() - started) * 100) / 100,
      client,
      uuid: trace.uuid,
      serial: trace.serial,
      reason: trace.reason,
    });
  });

  app.onError((err, c) => {
    const e = toKilnError(err);
    if (e.httpStatus >= 500) {
      deps.logger.error('server_error', { request_id: c.get('requestId'), code: e.code, error: String(e.cause ?? e) });
    }
    return plainError(c, e);
  });
  app.notFound((c) => plainError(c, new KilnError('not_found', `no route for ${c.req.method} ${c.req.path}`)));

  app.get('/sign', (c) => c.text('Kiln device registration: POST a device CSR as JSON to this URL\n'));

  app.post(
    '/sign',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) => plainError(c, new KilnError('too_large', `request body is larger than ${MAX_BODY_BYTES} bytes`)),
    }),
    async (c) => {
      const type = c.req.header('content-type') ?? '';
      if (!/^application\/json\s*(;|$)/i.test(type)) {
        throw new KilnError('unsupported_media_type', 'request body must be JSON (Content-Type: application/json)');
      }
      const body = await c.req.text();
      const files = await deps.signService.sign(body, { requestId: c.get('requestId'), clientAddress: c.get('client') }, c.get('trace'));
      return c.json(files, 201);
    },
  );

  app.get('/healthz', async (c) => {
    let db = 'ok';
    try {
      await deps.store.ping();
    } catch {
      db = 'unavailable';
    }
    const key = deps.signer.describe();
    const ok = db === 'ok' && key.state === 'ready';
    const upstream = deps.upstreamState?.();
    return c.json({ status: ok ? 'ok' : 'degraded', db, key, ...(upstream ? { upstream } : {}) }, ok ? 200 : 503);
  });

  return app;
}

function plainError(c: Context, e: KilnError): Response {
  const message = e.message.replace(/[\r\n]+/g, ' ');
  const trace = c.get('trace') as SignTrace | undefined;
  if (trace) trace.reason = message;
  return c.text(message + '\n', e.httpStatus as 400);
}
