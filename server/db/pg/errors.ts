// PostgreSQL failures as one-line errors with the right exit code: a bad URL, a refused
// login or a missing database is configuration (78); an unreachable or restarting server
// is a temporary unavailability (503 on /sign, 69 on the CLIs). Passwords never show.
import { KilnError, type ErrorCode } from '../../../pki/errors.js';

/** The URL with its password replaced: postgres://user:***@host/db. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
  }
}

const CONFIG_STATES = new Set(['28P01', '28000', '3D000', '3F000', '42501']);

export function pgError(err: unknown, where: string, doing: 'open' | 'use'): KilnError {
  if (err instanceof KilnError) return err;
  const e = err as { code?: string; message?: string };
  const message = (e.message ?? String(err)).split('\n')[0];
  let code: ErrorCode;
  if (e.code && CONFIG_STATES.has(e.code)) code = 'config';
  else if (e.code && /^(ECONNREFUSED|ENOTFOUND|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|57P0[1-3]|08...)$/.test(e.code)) code = 'unavailable';
  else if (/timeout|terminated|Connection terminated/i.test(message)) code = 'unavailable';
  else if (doing === 'open' && /invalid|URL|connection string/i.test(message)) code = 'config';
  else code = doing === 'open' ? 'unavailable' : 'unavailable';
  const what = code === 'config' ? 'cannot use the registry' : 'the registry is unavailable';
  return new KilnError(code, `${what} ${where}: ${message.replace(/:\/\/([^:/@]*):[^@]*@/g, '://$1:***@')}`, { cause: err });
}
