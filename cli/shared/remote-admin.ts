// The admin API as an AdminApi, for `kilnctl … --server URL --token-file F`: the same
// operations and results as on a local registry, over HTTP with a bearer token.
import { request } from 'undici';
import { KilnError, type ErrorCode, ERROR_TABLE } from '../../pki/errors.js';
import type { AdminApi } from '../../server/admin/service.js';

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/;

/** Timestamps come back as Date, as from the registry, so the same printers serve both. */
const revive = (_k: string, v: unknown): unknown => (typeof v === 'string' && ISO.test(v) ? new Date(v) : v);

export function createRemoteAdmin(server: string, token: string, timeoutMs = 30_000): AdminApi {
  const base = server.replace(/\/+$/, '') + '/api/v1';
  const call = async <T>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    query?: Record<string, string | number | undefined>,
  ): Promise<T> => {
    const q = query
      ? '?' +
        Object.entries(query)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`)
          .join('&')
      : '';
    let res;
    try {
      res = await request(base + path + q, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    } catch (err) {
      throw new KilnError(
        'unavailable',
        `cannot reach the admin API at ${server}: ${(err as { code?: string }).code ?? (err as Error).message}`,
        { cause: err },
      );
    }
    const text = await res.body.text();
    let data: unknown;
    try {
      data = JSON.parse(text, revive);
    } catch {
      throw new KilnError('unavailable', `the admin API at ${server} answered HTTP ${res.statusCode} with something that is not JSON`);
    }
    if (res.statusCode !== 200) {
      const e = data as { error?: string; code?: string };
      const code = (e.code && e.code in ERROR_TABLE ? e.code : res.statusCode === 401 ? 'unauthorized' : 'internal') as ErrorCode;
      throw new KilnError(code, e.error ?? `HTTP ${res.statusCode}`);
    }
    return data as T;
  };
  const enc = encodeURIComponent;
  return {
    listDevices: (page) => call('GET', '/devices', undefined, { ...page }),
    showDevice: (uuid) => call('GET', `/devices/${enc(uuid)}`),
    deny: (uuids, reason, opts) => call('POST', '/devices/deny', { uuids, reason, revoke: opts?.revoke }),
    revoke: (target, reason) => call('POST', '/devices/revoke', { ...target, reason }),
    deleteDevices: (uuids, reason) => call('POST', '/devices/delete', { uuids, reason }),
    allowRekey: (uuids, reason) => call('POST', '/devices/allow-rekey', { uuids, reason }),
    listDenied: (page) => call('GET', '/denied', undefined, { ...page }),
    removeDenied: (uuids) => call('POST', '/denied/remove', { uuids }),
    preauthorize: (rows) => call('POST', '/devices/preauthorize', { rows }),
    createLot: (input) => call('POST', '/lots', { ...input, expiresAt: input.expiresAt?.toISOString() }),
    listLots: () => call('GET', '/lots'),
    showLot: (name) => call('GET', `/lots/${enc(name)}`),
    revokeLot: (name) => call('POST', `/lots/${enc(name)}/revoke`),
    rotateLotToken: (name) => call('POST', `/lots/${enc(name)}/rotate-token`),
    listApprovals: (filter, page) => call('GET', '/approvals', undefined, { ...page, all: String(filter.all) }),
    decideApprovals: (uuids, decision) => call('POST', decision === 'approved' ? '/approvals/approve' : '/approvals/reject', { uuids }),
    upstreamStatus: () => call('GET', '/upstream/status'),
    listDeliveries: (filter, page) => call('GET', '/upstream/deliveries', undefined, { ...page, status: filter.status }),
    retryDeliveries: (uuids) => call('POST', '/upstream/retry', { uuids }),
    listAudit: (page) => call('GET', '/audit', undefined, { ...page }),
  };
}
