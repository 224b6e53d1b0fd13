// The WAL checkpoint thread (bundled to dist/sqlite-checkpointer.js, started by
// the writer thread). SQLite's automatic checkpoint runs inside the COMMIT that
// crosses 1,000 WAL pages, so that batch's 201s waited while pages were copied
// into the database file and it was fsynced. Here a PASSIVE checkpoint runs on
// its own connection every 250 ms, beside the writer, never blocking it.
//
// A checkpoint beside a busy writer never catches up with it, and SQLite only
// starts the WAL over once every frame is back in the database: under a steady
// line the WAL grew by ~17 KB a registration (332-344 MB after a 20,000-device
// burst). So after a checkpoint that left a long WAL behind, this thread tells
// the writer, which checkpoints the few frames written since, right after its
// next commit, and its next transaction starts the WAL over (bench at
// concurrency 16: the WAL peaks at 13-15 MB, reg/s within the noise).
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import { backgroundThread } from '../../native-ecdsa.js';

const CHECKPOINT_INTERVAL_MS = 250;
/** A WAL at least this long after a checkpoint (~4 MB): ask the writer to catch up. */
const CATCH_UP_FRAMES = 1000;

interface CheckpointReport {
  /** frames in the WAL */
  log: number;
}

backgroundThread(); // never preempts the event loop or the writer when its timer fires
// an existing registry only: a thread starting after the file was deleted must not make a new one
const db = new Database((workerData as { path: string }).path, { fileMustExist: true });
db.pragma('busy_timeout = 5000');
const timer = setInterval(() => {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number }[];
    if (r.log >= CATCH_UP_FRAMES) parentPort!.postMessage({ log: r.log } satisfies CheckpointReport);
  } catch {
    // busy or failed: the next tick tries again
  }
}, CHECKPOINT_INTERVAL_MS);

parentPort!.once('message', () => {
  clearInterval(timer);
  db.close();
  parentPort!.close();
});
