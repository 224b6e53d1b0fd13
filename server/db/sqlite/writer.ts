// Talks to the SQLite writer thread (writer-worker.ts, built to dist/) and keeps one
// running: a thread that dies is started again with back-off, and while it is down
// every record is refused at once (503, the device retries) instead of waiting.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { KilnError, type ErrorCode } from '../../../pki/errors.js';
import { packageRoot } from '../../paths.js';
import { toRecordRow, type RecordRow, type Writer } from './recorder.js';
import type { OutboxChangeRow, WriterReply, WriterRequest } from './writer-worker.js';
import type { OutboxEntry, Repeat, WriterStats } from '../store.js';

export const WRITER_SCRIPT = (): string => join(packageRoot(), 'dist/sqlite-writer.js');

/** What the writer tells its owner (the server logs it, counts it). */
export interface WriterEvents {
  /** The thread stopped unexpectedly; it is started again after `restartInMs`. */
  down?(cause: string, restartInMs: number): void;
  /** A thread is running again after `restarts` restarts. */
  up?(restarts: number): void;
  /** A batch of `size` records was committed (or refused) by the thread. */
  batch?(size: number): void;
  /** The thread refused to write: the registry file is not the one it opened. */
  fileProblem?(detail: string): void;
}

export interface SupervisedWriter extends Writer {
  /**
   * A round trip to the thread. Resolves with what is wrong with the registry file (deleted,
   * replaced, not writable), undefined when nothing is; rejects when the thread does not answer.
   */
  ping(timeoutMs?: number): Promise<string | undefined>;
  updateOutbox(
    serial: string,
    change: Pick<OutboxEntry, 'status' | 'attempts' | 'nextAttemptAt' | 'lastError' | 'deliveredAt'>,
  ): Promise<void>;
  stats(): WriterStats;
  /** Tests only: the running thread (to kill it). */
  threadForTests(): Worker | undefined;
}

const MAX_BACKOFF_MS = 10_000;

const unavailable = (cause: string): KilnError =>
  new KilnError('unavailable', 'device registry is unavailable; try again', { cause: new Error(cause) });

export function startWriterWorker(
  path: string,
  events: WriterEvents = {},
  identity: { dev: number; ino: number } = statSync(path),
): SupervisedWriter {
  const script = WRITER_SCRIPT();
  if (!existsSync(script)) throw new KilnError('config', `${script} is missing: run npm run build`);
  type Pending = { resolve: (r: Repeat | undefined) => void; reject: (e: unknown) => void };
  const pending = new Map<number, Pending>();
  const calls = new Map<number, { resolve: (fileProblem?: string) => void; reject: (e: unknown) => void }>();
  let next = 0;
  // records from one event-loop turn travel in one message
  let outgoing: { id: number; row: RecordRow }[] = [];
  let worker: Worker | undefined;
  let down: KilnError | undefined;
  let closing = false;
  let restarts = 0;
  let failures = 0;
  let restartTimer: NodeJS.Timeout | undefined;
  let exited: Promise<void> = Promise.resolve();

  const failAll = (err: KilnError): void => {
    for (const p of pending.values()) p.reject(err);
    pending.clear();
    for (const c of calls.values()) c.reject(err);
    calls.clear();
    outgoing = [];
  };

  const send = (): void => {
    const batch = outgoing;
    outgoing = [];
    if (!batch.length) return;
    if (!worker || down) {
      for (const b of batch) (pending.get(b.id)?.reject(down ?? unavailable('no writer thread')), pending.delete(b.id));
      return;
    }
    worker.postMessage({ batch } satisfies WriterRequest);
  };

  const onMessage = (m: WriterReply): void => {
    if ('pong' in m || 'done' in m) {
      const id = 'pong' in m ? m.pong : m.done;
      const c = calls.get(id);
      calls.delete(id);
      if (!c) return;
      if ('pong' in m && m.problem && m.file) {
        events.fileProblem?.(m.problem);
        c.resolve(m.problem);
      } else if (m.problem) c.reject(unavailable(m.problem));
      else c.resolve();
      return;
    }
    if ('failed' in m) {
      if (m.file) events.fileProblem?.(m.message);
      const err = unavailable(m.message);
      for (const id of m.failed) (pending.get(id)?.reject(err), pending.delete(id));
      events.batch?.(m.failed.length);
      return;
    }
    failures = 0;
    m.ids.forEach((id, i) => {
      const p = pending.get(id);
      pending.delete(id);
      const e = m.errors[i];
      if (e) p?.reject(new KilnError(e.code as ErrorCode, e.message));
      else p?.resolve(m.repeats[i] ?? undefined);
    });
    events.batch?.(m.ids.length);
  };

  const start = (): void => {
    const w = new Worker(script, { workerData: { path, identity: { dev: identity.dev, ino: identity.ino } } });
    worker = w;
    down = undefined;
    w.on('message', onMessage);
    const died = (cause: string): void => {
      if (worker !== w) return;
      worker = undefined;
      if (closing) return;
      // answered as unavailable: the device retries; a record the thread committed before it died is a repeat then
      down = unavailable(`the writer thread stopped: ${cause}`);
      failAll(down);
      const wait = Math.min(MAX_BACKOFF_MS, 100 * 2 ** failures++);
      events.down?.(cause, wait);
      restartTimer = setTimeout(() => {
        restartTimer = undefined;
        if (closing) return;
        restarts++;
        try {
          start();
          events.up?.(restarts);
        } catch (err) {
          died(`cannot start it again: ${(err as Error).message}`);
        }
      }, wait);
      restartTimer.unref();
    };
    // a SqliteError reaches this thread as a bare object: its code is what is left of it
    w.on('error', (err: Error & { code?: string }) =>
      died(err.message ?? (err.code === 'SQLITE_CANTOPEN' ? `cannot open ${path} (SQLITE_CANTOPEN)` : String(err.code ?? err))),
    );
    exited = new Promise<void>((resolve) =>
      w.once('exit', (code) => {
        died(`exited with code ${code}`);
        resolve();
      }),
    );
  };
  start();

  const call = (msg: (id: number) => WriterRequest, timeoutMs: number): Promise<string | undefined> =>
    new Promise((resolve, reject) => {
      if (down || !worker) return reject(down ?? unavailable('no writer thread'));
      const id = next++;
      const timer = setTimeout(() => {
        calls.delete(id);
        reject(unavailable(`the writer thread did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      calls.set(id, {
        resolve: (fileProblem) => (clearTimeout(timer), resolve(fileProblem)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      worker.postMessage(msg(id));
    });

  return {
    record: (cert, opts) =>
      new Promise((resolve, reject) => {
        if (down || !worker) return reject(down ?? unavailable('no writer thread'));
        const id = next++;
        pending.set(id, { resolve, reject });
        if (outgoing.push({ id, row: toRecordRow(cert, opts) }) === 1) setImmediate(send);
      }),
    ping: (timeoutMs = 2000) => call((id) => ({ ping: id }), timeoutMs),
    updateOutbox: (serial, change) => {
      const row: OutboxChangeRow = [
        change.status,
        change.attempts,
        change.nextAttemptAt.getTime(),
        change.lastError,
        change.deliveredAt ? change.deliveredAt.getTime() : null,
        serial,
      ];
      return call((id) => ({ outbox: { id, row } }), 30_000).then(() => undefined);
    },
    stats: () => ({ state: closing ? 'closed' : down ? 'restarting' : 'running', queueDepth: pending.size, restarts }),
    threadForTests: () => worker,
    async close() {
      closing = true;
      if (restartTimer) clearTimeout(restartTimer);
      if (worker) {
        send();
        worker.postMessage({ close: true } satisfies WriterRequest);
        await exited;
      }
      failAll(unavailable('registry closed'));
    },
  };
}
