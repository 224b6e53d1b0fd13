// The WAL write buffer (native/walbuf.c, built to dist/kiln_walbuf.node): a
// SQLite VFS shim that gives a commit's WAL frames to the kernel in one or two
// writes instead of two per frame. Loading it makes it the process's default VFS,
// a pass-through for every connection until one arms it with
// `PRAGMA kiln_wal_buffer = 1` (the writer thread's, which runs at
// synchronous=FULL). Without the built extension, SQLite writes frame by frame.
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../paths.js';

export const WAL_BUFFER = (): string => join(packageRoot(), 'dist/kiln_walbuf.node');

/** Whether the extension is built (for the start-up line). */
export const walBufferBuilt = (path = WAL_BUFFER()): boolean => existsSync(path);

/** Registers the VFS in this process (once; later calls are no-ops); false when it cannot. */
export function loadWalBuffer(path = WAL_BUFFER()): boolean {
  if (!existsSync(path)) return false;
  const scratch = new Database(':memory:');
  try {
    scratch.loadExtension(path); // entry point sqlite3_kilnwalbuf_init, from the file name
    return true;
  } catch {
    return false;
  } finally {
    scratch.close();
  }
}

export interface WalBufferStats {
  armed: boolean;
  /** WAL writes SQLite made that were buffered */
  frameWrites: number;
  /** writes that reached the file */
  flushes: number;
}

/** The connection's buffer state; undefined when the VFS is not under this connection. */
export function walBufferStats(db: Database.Database): WalBufferStats | undefined {
  const v = db.pragma('kiln_wal_buffer', { simple: true }) as string | undefined;
  if (typeof v !== 'string') return undefined;
  const [armed, frameWrites, flushes] = v.split(' ').map(Number);
  return { armed: armed === 1, frameWrites, flushes };
}

/** Buffers this connection's WAL writes (it must run at synchronous=FULL); false without the VFS. */
export function armWalBuffer(db: Database.Database): boolean {
  db.pragma('kiln_wal_buffer = 1');
  return walBufferStats(db)?.armed === true;
}
