// The SQLite writer thread: commits /sign records in batches so the server's
// event loop never waits on an fsync. Bundled to dist/sqlite-writer.js.
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import { createRecorder, type RecordItem } from './recorder.js';

export type WriterRequest = { batch: { id: number; item: RecordItem }[] } | { close: true };
export type WriterReply = { ids: number[]; errors: ({ code: string; message: string } | null)[] } | { failed: number[]; message: string };

const sqlite = new Database((workerData as { path: string }).path);
sqlite.pragma('journal_mode = WAL');
sqlite.pragma('synchronous = FULL');
sqlite.pragma('busy_timeout = 5000');
const recorder = createRecorder(sqlite);
let queue: { id: number; item: RecordItem }[] = [];

function flush(): void {
  const batch = queue;
  queue = [];
  try {
    const outcomes = recorder.recordBatch(batch.map((b) => b.item));
    parentPort!.postMessage({
      ids: batch.map((b) => b.id),
      errors: outcomes.map((o) => (o ? { code: o.code, message: o.message } : null)),
    } satisfies WriterReply);
  } catch (err) {
    parentPort!.postMessage({ failed: batch.map((b) => b.id), message: (err as Error).message } satisfies WriterReply);
  }
}

parentPort!.on('message', (m: WriterRequest) => {
  if ('close' in m) {
    if (queue.length) flush();
    sqlite.close();
    parentPort!.close();
    return;
  }
  if (queue.length === 0) setImmediate(flush);
  for (const r of m.batch) queue.push(r);
});
