// The WAL checkpoint thread (bundled to dist/sqlite-checkpointer.js, started by
// the writer thread). SQLite's automatic checkpoint runs inside the COMMIT that
// crosses 1,000 WAL pages, so that batch's 201s waited while pages were copied
// into the database file and it was fsynced. Here a PASSIVE checkpoint runs on
// its own connection every 250 ms, beside the writer, never blocking it
// (three alternating bench pairs at concurrency 16: p99 inside the server
// 23.8/23.6/21.5 -> 22.8/23.0/18.5 ms).
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

const CHECKPOINT_INTERVAL_MS = 250;

const db = new Database((workerData as { path: string }).path);
db.pragma('busy_timeout = 5000');
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // busy or failed: the next tick tries again
  }
}, CHECKPOINT_INTERVAL_MS);

parentPort!.once('message', () => {
  clearInterval(timer);
  db.close();
  parentPort!.close();
});
