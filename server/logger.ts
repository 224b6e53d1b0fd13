// One JSON line per event. Callers pass only safe fields: never keys, PINs,
// tokens or CSRs.

export type LogFields = Record<string, string | number | boolean | undefined | null>;

export interface Logger {
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
}

export function createJsonLogger(write: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  const emit = (level: string, event: string, fields: LogFields = {}): void => {
    write(JSON.stringify({ time: new Date().toISOString(), level, event, ...fields }) + '\n');
  };
  return {
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
  };
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

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
