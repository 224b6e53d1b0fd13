// The SQLite writer thread: commits /sign records in batches so the server's
// event loop never waits on an fsync. Bundled to dist/sqlite-writer.js.
import Database from 'better-sqlite3';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parentPort, Worker, workerData } from 'node:worker_threads';
import { backgroundThread } from '../../native-ecdsa.js';
import { KilnError } from '../../../pki/errors.js';
import type { Repeat } from '../store.js';
import { createRecorder, type RecordRow } from './recorder.js';
import { armWalBuffer, loadWalBuffer } from './wal-buffer.js';

export type WriterRequest = { batch: { id: number; row: RecordRow }[] } | { close: true };
export type WriterReply =
  | { ids: number[]; errors: ({ code: string; message: string } | null)[]; repeats: (Repeat | null)[] }
  | { failed: number[]; message: string };

// records are handed over by the event loop: waking this thread must not preempt it
backgroundThread();
// before the connection opens: the WAL buffer is a VFS, chosen when a file is opened
const walBuffer = loadWalBuffer();
const sqlite = new Database((workerData as { path: string }).path);
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
  if (queue.length === 0) setImmediate(flush);
  for (const r of m.batch) queue.push(r);
});
