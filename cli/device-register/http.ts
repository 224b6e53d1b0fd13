// Talking to the registration server: the HEAD reachability check and POST /sign.
// node:http(s) rather than fetch: loading fetch costs ~200 ms at start-up.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { KilnError } from '../../pki/errors.js';

export interface SignAnswer {
  status: number;
  text: string;
}

const MAX_ANSWER_BYTES = 1024 * 1024;

interface Call {
  method: 'HEAD' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  /** CA certificates (PEM) to verify an https server against, instead of the system's */
  ca?: Buffer;
  /** TLS client authentication: the device's certificate and key (PEM) */
  client?: { cert: string; key: string };
}

function call(url: string, c: Call): Promise<SignAnswer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const headers: Record<string, string | number> = { ...c.headers };
    if (c.body !== undefined) headers['Content-Length'] = Buffer.byteLength(c.body);
    const tls = { ...(c.ca ? { ca: c.ca } : {}), ...(c.client ?? {}) };
    const req = send(u, { method: c.method, headers, timeout: c.timeoutMs, ...tls }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        size += d.length;
        if (size > MAX_ANSWER_BYTES) req.destroy(new Error('answer larger than 1 MiB'));
        else chunks.push(d);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => reject(transport(url, err)));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (err) => reject(transport(url, err)));
    req.end(c.body);
  });
}

const transport = (url: string, err: unknown): KilnError => {
  const e = err as NodeJS.ErrnoException;
  return new KilnError('temporary', `cannot reach ${url}: ${e.code ?? e.message}`, { cause: err });
};

/** lmp-device-register aborts only on a transport error or a status >= 500. */
export async function checkReachable(url: string, timeoutMs: number, ca?: Buffer): Promise<void> {
  const res = await call(url, { method: 'HEAD', timeoutMs, ca });
  if (res.status >= 500) throw new KilnError('temporary', `${url} answered HEAD with HTTP ${res.status}`);
}

export function postSign(url: string, body: string, headers: Record<string, string>, timeoutMs: number, ca?: Buffer): Promise<SignAnswer> {
  return call(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body, timeoutMs, ca });
}

/** EST simplereenroll (RFC 7030 §4.2.2): a base64 PKCS#10, authenticated by the current certificate. */
export function postReenroll(
  url: string,
  csrBase64: string,
  client: { cert: string; key: string },
  timeoutMs: number,
  ca?: Buffer,
): Promise<SignAnswer> {
  return call(url, { method: 'POST', headers: { 'Content-Type': 'application/pkcs10' }, body: csrBase64, timeoutMs, ca, client });
}

/** The server's reason, made safe to print on one line. */
export function reasonOf(text: string): string {
  const clean = text
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '')
    .replace(/\s+/g, ' ')
    .trim();
  return clean.length > 300 ? clean.slice(0, 297) + '...' : clean || '(no reason given)';
}

/** Maps a non-201 answer to the error (and so the exit code) it deserves. */
export function refusal(answer: SignAnswer): KilnError {
  const reason = `HTTP ${answer.status}: ${reasonOf(answer.text)}`;
  // a manual lot: the server recorded the request; an operator must approve it, then a retry succeeds
  if (answer.status === 202) return new KilnError('pending', `registration awaits approval by an operator; retry later: ${reason}`);
  // 5xx, 408 and 429 are not refusals: the same request may succeed later (exit 75)
  if (answer.status >= 500 || answer.status === 429 || answer.status === 408)
    return new KilnError('temporary', `server temporarily unavailable, try again later: ${reason}`);
  const msg = `registration refused: ${reason}`;
  if (answer.status === 401 || answer.status === 403) return new KilnError('denied', msg);
  return new KilnError('bad_request', msg);
}

/** A 201 body: a JSON object of string values. */
export function parseFiles(text: string): Record<string, string> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new KilnError('bad_request', 'server answered 201 with a body that is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new KilnError('bad_request', 'server answered 201 with JSON that is not an object');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw new KilnError('bad_request', `server sent a non-string value for ${JSON.stringify(k.slice(0, 40))}`);
    out[k] = val;
  }
  return out;
}
