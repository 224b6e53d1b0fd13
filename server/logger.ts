// One JSON line per event. Callers pass only safe fields: never keys, PINs,
// tokens or CSRs.

export type LogFields = Record<string, string | number | boolean | undefined | null>;

export interface Logger {
  /** Start-up and shutdown lines: written at every log level. */
  notice(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
}

export type LogLevel = 'error' | 'warn' | 'info';

const RANK: Record<LogLevel | 'notice', number> = { notice: -1, error: 0, warn: 1, info: 2 };

/** Lines below `level` are not written (`warn` drops the per-request lines). */
export function createJsonLogger(write: (line: string) => void = (l) => process.stdout.write(l), level: LogLevel = 'info'): Logger {
  const emit = (lvl: LogLevel | 'notice', event: string, fields: LogFields = {}): void => {
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, event, ...fields }) + '\n');
  };
  const noop = (): void => {};
  const at = (lvl: LogLevel | 'notice'): Logger['info'] => (RANK[lvl] <= RANK[level] ? (e, f) => emit(lvl, e, f) : noop);
  return { notice: at('notice'), info: at('info'), warn: at('warn'), error: at('error') };
}

/**
 * Lines written within one event-loop turn leave in one write: a busy server logs a
 * line per request, and a write(2) each was ~2% of its event loop. What is pending
 * is written when the process exits.
 */
export function batchedLines(write: (chunk: string) => void): (line: string) => void {
  let pending = '';
  const flush = (): void => {
    if (pending === '') return;
    const chunk = pending;
    pending = '';
    write(chunk);
  };
  process.on('exit', flush);
  return (line) => {
    if (pending === '') setImmediate(flush);
    pending += line;
  };
}

export const silentLogger: Logger = { notice() {}, info() {}, warn() {}, error() {} };
