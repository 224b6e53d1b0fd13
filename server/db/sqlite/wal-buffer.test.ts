// The WAL write buffer (native/walbuf.c) must change how many writes reach the
// WAL file and nothing else: every commit readable by other connections as soon
// as it returns, durable once it returns, and the file a valid database after.
import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/pki.js';
import { createRecorder, type RecordRow } from './recorder.js';
import { openSqliteStore } from './store.js';
import { armWalBuffer, loadWalBuffer, WAL_BUFFER, walBufferStats } from './wal-buffer.js';

const BETTER_SQLITE3 = createRequire(import.meta.url).resolve('better-sqlite3');

const row = (): RecordRow => {
  const uuid = randomUUID();
  const now = Date.now();
  return [
    randomUUID().replace(/-/g, ''),
    uuid,
    `CN=${uuid}`,
    'hw',
    uuid,
    0,
    now,
    now + 1000,
    'P'.repeat(900),
    now,
    '127.0.0.1',
    'r',
    null,
    0,
    randomUUID(),
    1,
    null,
    null,
  ];
};

/** A migrated registry, and a connection to it set up as the writer thread's. */
async function registry(sync: 'FULL' | 'NORMAL' = 'FULL'): Promise<{ path: string; db: Database.Database }> {
  const path = join(tempDir(), 'kiln.db');
  await openSqliteStore(path, { writer: 'inline' }).close();
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${sync}`);
  db.pragma('wal_autocheckpoint = 0');
  return { path, db };
}

const count = (db: Database.Database): number => (db.prepare('SELECT count(*) AS n FROM certificates').get() as { n: number }).n;

describe('WAL write buffer', () => {
  it('is built, loads, and buffers only the connections that arm it', async () => {
    expect(loadWalBuffer()).toBe(true);
    expect(loadWalBuffer()).toBe(true); // a second load is a no-op
    expect(loadWalBuffer('/nonexistent/kiln_walbuf.node')).toBe(false);
    const armed = await registry();
    const plain = await registry();
    expect(armWalBuffer(armed.db)).toBe(true);
    const batches = 40;
    for (const { db } of [armed, plain]) {
      const recorder = createRecorder(db);
      for (let i = 0; i < batches; i++) recorder.recordBatch(Array.from({ length: 8 }, row));
      expect(count(db)).toBe(batches * 8);
    }
    const a = walBufferStats(armed.db)!;
    // ~37 frames a commit, two writes each, reach the file as one or two writes per commit
    expect(a.armed).toBe(true);
    expect(a.flushes).toBeGreaterThanOrEqual(batches);
    expect(a.frameWrites).toBeGreaterThan(20 * a.flushes);
    expect(walBufferStats(plain.db)).toEqual({ armed: false, frameWrites: 0, flushes: 0 });
    armed.db.close();
    plain.db.close();
  });

  it.each(['FULL', 'NORMAL'] as const)('at synchronous=%s, another connection reads every commit as soon as it returns', async (sync) => {
    loadWalBuffer();
    const { path, db } = await registry(sync);
    expect(armWalBuffer(db)).toBe(true);
    const reader = new Database(path, { readonly: true });
    const recorder = createRecorder(db);
    for (let i = 1; i <= 60; i++) {
      recorder.recordBatch(Array.from({ length: 5 }, row));
      expect(count(reader)).toBe(i * 5);
    }
    expect(reader.pragma('integrity_check', { simple: true })).toBe('ok');
    reader.close();
    db.close();
  });

  it('kill -9 right after commits loses none of them, and the file is a valid database without the buffer', async () => {
    const { path, db } = await registry();
    db.close();
    // a child process commits batches through an armed connection and reports each commit once it returned
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const Database = require(${JSON.stringify(BETTER_SQLITE3)});
         const scratch = new Database(':memory:'); scratch.loadExtension(${JSON.stringify(WAL_BUFFER())}); scratch.close();
         const db = new Database(${JSON.stringify(path)});
         db.pragma('journal_mode = WAL'); db.pragma('synchronous = FULL'); db.pragma('wal_autocheckpoint = 0');
         db.pragma('kiln_wal_buffer = 1');
         if (!db.pragma('kiln_wal_buffer', { simple: true }).startsWith('1 ')) process.exit(3);
         const ins = db.prepare("INSERT INTO certificates (serial, uuid, subject, hardware_id, name, production, not_before, not_after, pem, issued_at, client_address, request_id) VALUES (?, ?, 'CN=x', 'hw', 'n', 0, 0, 0, ?, 0, '127.0.0.1', 'r')");
         const batch = db.transaction((n) => { for (let i = 0; i < 8; i++) ins.run(n + '-' + i, 'u' + n, 'P'.repeat(900)); });
         for (let n = 1; ; n++) { batch(n); process.stdout.write(n + '\\n'); }`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let reported = 0;
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
      child.stdout.on('data', (chunk: Buffer) => {
        reported = Math.max(reported, ...chunk.toString().trim().split('\n').map(Number));
        if (reported >= 200) {
          child.removeAllListeners('exit');
          child.kill('SIGKILL');
          child.once('exit', () => resolve());
        }
      });
    });
    // read back in a process that never loaded the buffer
    const check = spawnSync(
      process.execPath,
      [
        '-e',
        `const db = new (require(${JSON.stringify(BETTER_SQLITE3)}))(${JSON.stringify(path)});
         console.log(db.pragma('integrity_check', { simple: true }), db.prepare('SELECT count(*) AS n FROM certificates').get().n);`,
      ],
      { encoding: 'utf8' },
    );
    const [integrity, rows] = check.stdout.trim().split(' ');
    expect(integrity).toBe('ok');
    expect(Number(rows)).toBeGreaterThanOrEqual(reported * 8);
  });
});
