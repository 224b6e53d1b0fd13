// POST /sign straight on node:http. This is the hot path of a factory line: it
// skips the Web Request/Response/stream objects a framework route would build
// (they were ~13% of the event loop's time under load). Every other route goes
// through the hono app (app.ts); both log and answer errors the same way.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { KilnError, toKilnError } from '../pki/errors.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { RateLimiter } from './rate-limit.js';
import type { SignService, SignTrace } from './sign-service.js';

export const MAX_BODY_BYTES = 64 * 1024;

const JSON_TYPE = /^application\/json\s*(;|$)/i;

export interface SignRouteDeps {
  signService: SignService;
  logger: Logger;
  /** The peer address; defaults to the socket's. */
  clientAddress?: (req: IncomingMessage) => string;
  /** The header carrying the device's token (lmp-device-register's -H; default OSF-TOKEN). */
  authHeader?: string;
  metrics?: Metrics;
  /** Requests served at once; past it, 503 with Retry-After instead of an unbounded queue (0: no bound). */
  maxInFlight?: number;
  /** Per client address (device network); past it, 429 with Retry-After. */
  rateLimiter?: RateLimiter;
}

/** The peer address of a request's socket. */
export const socketAddress = (req: IncomingMessage): string => req.socket.remoteAddress ?? 'unknown';

/** The one-line, plain-text body of an error answer. */
export const errorLine = (e: KilnError): string => e.message.replace(/[\r\n]+/g, ' ') + '\n';

/** Logs a 5xx's cause (never sent to the client). */
export function logServerError(logger: Logger, requestId: string, e: KilnError): void {
  if (e.httpStatus >= 500) logger.error('server_error', { request_id: requestId, code: e.code, error: String(e.cause ?? e) });
}

const ms = (v: number | undefined): number | undefined => (v === undefined ? undefined : Math.round(v * 100) / 100);

/** The one request line every route writes. */
export function logRequest(
  logger: Logger,
  r: { requestId: string; method: string; path: string; status: number; started: number; client: string; trace: SignTrace },
): void {
  logger.info('request', {
    request_id: r.requestId,
    method: r.method,
    path: r.path,
    status: r.status,
    latency_ms: ms(performance.now() - r.started),
    // where a /sign request's time went: the CSR check and signature, the registry commit
    sign_ms: ms(r.trace.signMs),
    record_ms: ms(r.trace.recordMs),
    client: r.client,
    uuid: r.trace.uuid,
    serial: r.trace.serial,
    reason: r.trace.reason,
    // a retry answered with the device's current certificate
    repeat: r.trace.repeat,
  });
}

/** Reads the body as UTF-8, refusing more than `limit` bytes (declared or sent). */
function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const tooLarge = (): KilnError => new KilnError('too_large', `request body is larger than ${limit} bytes`);
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(tooLarge());
      } else chunks.push(chunk);
    });
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8')));
    req.once('error', (err) => reject(new KilnError('bad_request', 'request body was not received', { cause: err })));
  });
}

export function createSignRoute(deps: SignRouteDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const clientAddress = deps.clientAddress ?? socketAddress;
  const authHeader = (deps.authHeader ?? 'OSF-TOKEN').toLowerCase();
  const tokenOf = (req: IncomingMessage): string | undefined => {
    const v = req.headers[authHeader];
    return Array.isArray(v) ? v[0] : v;
  };

  const metrics = deps.metrics;
  const maxInFlight = deps.maxInFlight ?? 0;
  let inFlight = 0;
  metrics?.watchInFlight(() => inFlight);

  return (req, res) => {
    const started = performance.now();
    const requestId = randomUUID();
    const client = clientAddress(req);
    const trace: SignTrace = {};
    let counted = false;

    const answer = (status: number, type: string, body: string): void => {
      logRequest(deps.logger, { requestId, method: 'POST', path: '/sign', status, started, client, trace });
      if (counted) inFlight--;
      metrics?.request('sign', status, trace.code, (performance.now() - started) / 1000, trace);
      if (res.destroyed) return;
      res.writeHead(status, {
        'content-type': type,
        'content-length': Buffer.byteLength(body),
        'x-request-id': requestId,
      });
      res.end(body);
    };
    const fail = (err: unknown): void => {
      const e = toKilnError(err);
      logServerError(deps.logger, requestId, e);
      trace.reason = errorLine(e).trimEnd();
      trace.code = e.code;
      // the rest of an oversized body is not read: close rather than keep the connection
      if (e.code === 'too_large') res.setHeader('connection', 'close');
      answer(e.httpStatus, 'text/plain; charset=UTF-8', errorLine(e));
    };

    // shed load before reading anything: a device told to come back later costs nothing here
    const wait = deps.rateLimiter?.take(client, Date.now());
    if (wait !== undefined) {
      req.resume();
      metrics?.shed('rate_limit');
      res.setHeader('retry-after', String(wait));
      return fail(new KilnError('rate_limited', `too many requests from ${client}; try again in ${wait} s`));
    }
    if (maxInFlight > 0 && inFlight >= maxInFlight) {
      req.resume();
      metrics?.shed('overload');
      res.setHeader('retry-after', '1');
      return fail(new KilnError('unavailable', `server busy: ${maxInFlight} registrations in progress; try again`));
    }
    inFlight++;
    counted = true;
    if (!JSON_TYPE.test(req.headers['content-type'] ?? '')) {
      req.resume();
      return fail(new KilnError('unsupported_media_type', 'request body must be JSON (Content-Type: application/json)'));
    }
    readBody(req, MAX_BODY_BYTES)
      .then((body) => deps.signService.sign(body, { requestId, clientAddress: client, token: tokenOf(req) }, trace))
      .then((files) => answer(201, 'application/json', JSON.stringify(files)), fail);
  };
}
