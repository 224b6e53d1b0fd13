// Talks to the SQLite writer thread (writer-worker.ts, built to dist/).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { KilnError, type ErrorCode } from '../../../pki/errors.js';
import { packageRoot } from '../../paths.js';
import { toRecordRow, type RecordRow, type Writer } from './recorder.js';
import type { WriterReply, WriterRequest } from './writer-worker.js';
import type { Repeat } from '../store.js';

export const WRITER_SCRIPT = (): string => join(packageRoot(), 'dist/sqlite-writer.js');

export function startWriterWorker(path: string): Writer {
  const script = WRITER_SCRIPT();
  if (!existsSync(script)) throw new KilnError('config', `${script} is missing: run npm run build`);
  const worker = new Worker(script, { workerData: { path } });
  const pending = new Map<number, { resolve: (r: Repeat | undefined) => void; reject: (e: unknown) => void }>();
  let next = 0;
  // records from one event-loop turn travel in one message
  let outgoing: { id: number; row: RecordRow }[] = [];
  const send = (): void => {
    const batch = outgoing;
    outgoing = [];
    worker.postMessage({ batch } satisfies WriterRequest);
  };
  let dead: KilnError | undefined;
  const failAll = (err: KilnError): void => {
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  worker.on('message', (m: WriterReply) => {
    if ('failed' in m) {
      const err = new KilnError('unavailable', 'device registry is unavailable; try again', { cause: new Error(m.message) });
      for (const id of m.failed) (pending.get(id)?.reject(err), pending.delete(id));
      return;
    }
    m.ids.forEach((id, i) => {
      const p = pending.get(id);
      pending.delete(id);
      const e = m.errors[i];
      if (e) p?.reject(new KilnError(e.code as ErrorCode, e.message));
      else p?.resolve(m.repeats[i] ?? undefined);
    });
  });
  worker.on('error', (err) => {
    dead = new KilnError('unavailable', 'device registry writer stopped; try again', { cause: err });
    failAll(dead);
  });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    record: (cert, opts) =>
      new Promise((resolve, reject) => {
        if (dead) return reject(dead);
        const id = next++;
        pending.set(id, { resolve, reject });
        if (outgoing.push({ id, row: toRecordRow(cert, opts) }) === 1) setImmediate(send);
      }),
    async close() {
      if (outgoing.length) send();
      worker.postMessage({ close: true } satisfies WriterRequest);
      await exited;
      failAll(new KilnError('unavailable', 'registry closed'));
    },
  };
}
