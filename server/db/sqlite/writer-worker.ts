// The SQLite writer thread: commits /sign records in batches so the server's
// event loop never waits on an fsync. Bundled to dist/sqlite-writer.js.
import Database from 'better-sqlite3';
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parentPort, Worker, workerData } from 'node:worker_threads';
import { backgroundThread } from '../../native-ecdsa.js';
import { KilnError } from '../../../pki/errors.js';
import type { Repeat } from '../store.js';
import { createRecorder, type RecordRow } from './recorder.js';
import { armWalBuffer, loadWalBuffer } from './wal-buffer.js';

/** An outbox delivery's new state: status, attempts, next attempt (ms), last error, delivered at (ms), serial. */
export type OutboxChangeRow = [
  status: string,
  attempts: number,
  nextAttemptAt: number,
  lastError: string,
  deliveredAt: number | null,
  serial: string,
];

export type WriterRequest =
  { batch: { id: number; row: RecordRow }[] } | { ping: number } | { outbox: { id: number; row: OutboxChangeRow } } | { close: true };
export type WriterReply =
  | { ids: number[]; errors: ({ code: string; message: string } | null)[]; repeats: (Repeat | null)[] }
  /** `file`: refused because the registry file is gone or replaced */
  | { failed: number[]; message: string; file?: boolean }
  | { pong: number; problem?: string; file?: boolean }
  | { done: number; problem?: string };

// records are handed over by the event loop: waking this thread must not preempt it
backgroundThread();
// before the connection opens: the WAL buffer is a VFS, chosen when a file is opened
const walBuffer = loadWalBuffer();
const { path, identity } = workerData as { path: string; identity?: { dev: number; ino: number } };
// the server created the registry; this thread (started again after a crash, say) never makes a new one
const sqlite = new Database(path, { fileMustExist: true });
// the file the server opened: a registry deleted or replaced under the server must stop the
// acknowledgements, not take them into an unlinked file that vanishes at the next start, nor
// into a new one (a restarted thread compares with the file the server started on)
const opened = identity ?? statSync(path);
function fileProblem(): string | undefined {
  try {
    const now = statSync(path);
    if (now.ino !== opened.ino || now.dev !== opened.dev) return `the registry file ${path} was replaced under the running server`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? `the registry file ${path} was deleted under the running server` : `cannot check ${path}: ${code}`;
  }
  return undefined;
}
const updateOutbox = () =>
  sqlite.prepare('UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?, delivered_at = ? WHERE serial = ?');
let outboxStatement: ReturnType<typeof updateOutbox> | undefined;
sqlite.pragma('journal_mode = WAL');
sqlite.pragma('synchronous = FULL');
// a commit's WAL frames go to the file in one or two writes, just before its fsync
if (walBuffer) armWalBuffer(sqlite);
sqlite.pragma('busy_timeout = 5000');
// checkpoints happen on their own thread (checkpointer.ts), not inside a batch's COMMIT
sqlite.pragma('wal_autocheckpoint = 0');
const checkpointer = new Worker(join(dirname(fileURLToPath(import.meta.url)), 'sqlite-checkpointer.js'), { workerData });
checkpointer.on('error', () => sqlite.pragma('wal_autocheckpoint = 1000')); // fall back to SQLite's own
// the checkpoint thread left a long WAL behind: copy what was written since, after the next commit
let catchUp = false;
checkpointer.on('message', () => (catchUp = true));
// a WAL that grew anyway (a long reader) is cut back to 64 MB when it starts over
sqlite.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);
const checkpointerDone = new Promise((resolve) => checkpointer.once('exit', resolve));
const recorder = createRecorder(sqlite);
let queue: { id: number; row: RecordRow }[] = [];

function flush(): void {
  const batch = queue;
  queue = [];
  const problem = fileProblem();
  if (problem) {
    parentPort!.postMessage({ failed: batch.map((b) => b.id), message: problem, file: true } satisfies WriterReply);
    return;
  }
  try {
    const outcomes = recorder.recordBatch(batch.map((b) => b.row));
    parentPort!.postMessage({
      ids: batch.map((b) => b.id),
      errors: outcomes.map((o) => (o instanceof KilnError ? { code: o.code, message: o.message } : null)),
      repeats: outcomes.map((o) => (o && !(o instanceof KilnError) ? o : null)),
    } satisfies WriterReply);
  } catch (err) {
    parentPort!.postMessage({ failed: batch.map((b) => b.id), message: (err as Error).message } satisfies WriterReply);
  }
  if (catchUp) {
    catchUp = false;
    try {
      sqlite.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // busy: the checkpoint thread will ask again
    }
  }
}

parentPort!.on('message', (m: WriterRequest) => {
  if ('close' in m) {
    if (queue.length) flush();
    checkpointer.postMessage('close');
    void checkpointerDone.then(() => {
      sqlite.close();
      parentPort!.close();
    });
    return;
  }
  if ('ping' in m) {
    let problem = fileProblem();
    let file = problem !== undefined;
    if (!problem) {
      try {
        sqlite.prepare('SELECT 1').get();
        accessSync(path, constants.W_OK);
        accessSync(dirname(path), constants.W_OK);
      } catch (err) {
        problem = `the registry ${path} is not writable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
        file = true;
      }
    }
    parentPort!.postMessage({ pong: m.ping, ...(problem ? { problem, file } : {}) } satisfies WriterReply);
    return;
  }
  if ('outbox' in m) {
    let problem = fileProblem();
    if (!problem) {
      try {
        (outboxStatement ??= updateOutbox()).run(...m.outbox.row);
      } catch (err) {
        problem = (err as Error).message;
      }
    }
    parentPort!.postMessage({ done: m.outbox.id, ...(problem ? { problem } : {}) } satisfies WriterReply);
    return;
  }
  if (queue.length === 0) setImmediate(flush);
  for (const r of m.batch) queue.push(r);
});
