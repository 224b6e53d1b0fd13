// The upstream device API (contract §6): create devices, read and delete the deny-list.
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { KilnError, unreadable } from '../pki/errors.js';

export interface UpstreamSettings {
  /** PUT target, e.g. https://api.foundries.io/ota/devices/ */
  api: string;
  token: string;
  group?: string;
  timeoutMs: number;
}

export type Delivery =
  | { kind: 'created'; status: number }
  /** 409: the device exists upstream */
  | { kind: 'exists'; status: number; body: string }
  /** 401/403: the token is wrong; stop and tell someone */
  | { kind: 'auth'; status: number; body: string }
  /** other 4xx: this request will never succeed */
  | { kind: 'rejected'; status: number; body: string }
  /** 5xx, timeouts, dropped connections: try again later */
  | { kind: 'retry'; status?: number; error: string };

export interface DeniedEntry {
  uuid: string;
  name: string;
  owner: string;
}

export interface UpstreamClient {
  createDevice(body: string): Promise<Delivery>;
  listDenied(factory: string): Promise<DeniedEntry[]>;
  deleteDenied(factory: string, uuid: string): Promise<void>;
}

const unreachable = (err: Error & { code?: string }): never => {
  throw new KilnError('temporary', `cannot reach the upstream API: ${err.code ?? err.message}`, { cause: err });
};

const oneLine = (s: string): string => s.replace(/\s+/g, ' ').trim().slice(0, 300);

export function createUpstreamClient(s: UpstreamSettings): UpstreamClient {
  const headers = { 'OSF-TOKEN': s.token, 'content-type': 'application/json' };
  const call = async (method: 'PUT' | 'GET' | 'DELETE', url: string, body?: string): Promise<{ status: number; text: string }> => {
    const res = await request(url, {
      method,
      headers,
      body,
      headersTimeout: s.timeoutMs,
      bodyTimeout: s.timeoutMs,
      signal: AbortSignal.timeout(s.timeoutMs),
    });
    return { status: res.statusCode, text: await res.body.text() };
  };
  const factoryUrl = (factory: string, path: string): string =>
    new URL(`/ota/factories/${encodeURIComponent(factory)}/denied-devices/${path}`, s.api).toString();
  const failed = (what: string, status: number, text: string): KilnError =>
    new KilnError(
      status === 401 || status === 403 ? 'unauthorized' : status >= 500 ? 'temporary' : 'bad_request',
      `upstream ${what}: HTTP ${status}: ${oneLine(text)}`,
    );

  return {
    async createDevice(body) {
      let res: { status: number; text: string };
      try {
        res = await call('PUT', s.api, body);
      } catch (err) {
        const e = err as Error & { code?: string };
        return { kind: 'retry', error: e.code ?? e.name ?? 'error' };
      }
      if (res.status >= 200 && res.status < 300) return { kind: 'created', status: res.status };
      if (res.status === 409) return { kind: 'exists', status: 409, body: oneLine(res.text) };
      if (res.status === 401 || res.status === 403) return { kind: 'auth', status: res.status, body: oneLine(res.text) };
      if (res.status >= 500 || res.status === 429 || res.status === 408)
        return { kind: 'retry', status: res.status, error: `HTTP ${res.status}` };
      return { kind: 'rejected', status: res.status, body: oneLine(res.text) };
    },
    async listDenied(factory) {
      const out: DeniedEntry[] = [];
      const limit = 100;
      for (let page = 1; page <= 10_000; page++) {
        const res = await call('GET', `${factoryUrl(factory, '')}?limit=${limit}&page=${page}`).catch(unreachable);
        if (res.status !== 200) throw failed('deny-list', res.status, res.text);
        let data: unknown;
        try {
          data = JSON.parse(res.text);
        } catch {
          throw new KilnError('bad_request', 'upstream deny-list answer is not JSON');
        }
        const d = data as Record<string, unknown>;
        const list = (Array.isArray(data) ? data : (d['denied-devices'] ?? d.devices ?? d.results ?? [])) as Record<string, unknown>[];
        for (const e of list)
          if (typeof e.uuid === 'string')
            out.push({ uuid: e.uuid.toLowerCase(), name: String(e.name ?? ''), owner: String(e.owner ?? '') });
        if (list.length < limit || (d && typeof d === 'object' && 'next' in d && !d.next)) break;
      }
      return out;
    },
    async deleteDenied(factory, uuid) {
      const res = await call('DELETE', factoryUrl(factory, `${encodeURIComponent(uuid)}/`)).catch(unreachable);
      if (res.status >= 300 && res.status !== 404) throw failed(`delete of ${uuid}`, res.status, res.text);
    },
  };
}

/** The upstream token (scope devices:create), from its file; empty is an error. */
export function readUpstreamToken(path: string): string {
  let token: string;
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw unreadable('the upstream token file', path, err);
  }
  if (!token) throw new KilnError('config', `the upstream token file ${path} is empty`);
  return token;
}

/** Exponential back-off with ±50% jitter, capped. */
export function backoffMs(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const raw = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(raw * (0.5 + random()));
}
