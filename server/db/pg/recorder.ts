// Recording issued certificates on PostgreSQL: records arriving in one event-loop turn
// travel as one batch, one round trip (kiln_record_batch, migration 0001) and one
// commit; several batches are in flight at once on the pool's connections.
import type { Pool } from 'pg';
import { KilnError, type ErrorCode } from '../../../pki/errors.js';
import type { IssuedCertificate, OutboxStatus, RecordOptions, Repeat } from '../store.js';

type Pending = { row: Record<string, unknown>; resolve: (r: Repeat | undefined) => void; reject: (e: unknown) => void };

/** A record as the function reads it (times in ms). */
const toRow = (c: IssuedCertificate, o: RecordOptions, i: number): Record<string, unknown> => ({
  i,
  serial: c.serial,
  uuid: c.uuid,
  subject: c.subject,
  hardwareId: c.hardwareId,
  name: c.name,
  production: c.production,
  notBefore: c.notBefore.getTime(),
  notAfter: c.notAfter.getTime(),
  pem: c.pem,
  issuedAt: c.issuedAt.getTime(),
  clientAddress: c.clientAddress,
  requestId: c.requestId,
  upstreamBody: c.upstreamBody ?? null,
  rejectReregistration: o.rejectReregistration,
  keySha256: c.keySha256,
  rekeyAllowed: o.rekey === 'allow',
  lot: c.lot ?? null,
  renews: c.renews ?? null,
});

interface Outcome {
  o_i: number;
  o_code: string | null;
  o_message: string | null;
  o_serial: string | null;
  o_pem: string | null;
  o_delivery: OutboxStatus | null;
}

export interface PgWriter {
  record(cert: IssuedCertificate, opts: RecordOptions): Promise<Repeat | undefined>;
  stats(): { queueDepth: number };
}

export function createPgWriter(pool: Pool, events: { batch?(size: number): void } = {}): PgWriter {
  let queue: Pending[] = [];
  let waiting = 0;

  const flush = async (): Promise<void> => {
    const batch = queue;
    queue = [];
    const rows = batch.map((p, i) => ({ ...p.row, i }));
    let outcomes: Outcome[];
    try {
      outcomes = (await pool.query<Outcome>('SELECT * FROM kiln_record_batch($1::jsonb)', [JSON.stringify(rows)])).rows;
    } catch (err) {
      const e = new KilnError('unavailable', 'device registry is unavailable; try again', { cause: err });
      for (const p of batch) p.reject(e);
      waiting -= batch.length;
      return;
    }
    events.batch?.(batch.length);
    waiting -= batch.length;
    for (const o of outcomes) {
      const p = batch[o.o_i];
      if (o.o_code === null) p.resolve(undefined);
      else if (o.o_code === 'repeat') p.resolve({ serial: o.o_serial!, pem: o.o_pem!, delivery: o.o_delivery });
      else if (o.o_code === 'unavailable')
        p.reject(new KilnError('unavailable', 'device registry is unavailable; try again', { cause: new Error(o.o_message ?? '') }));
      else p.reject(new KilnError(o.o_code as ErrorCode, o.o_message ?? o.o_code));
    }
  };

  return {
    record: (cert, opts) =>
      new Promise((resolve, reject) => {
        waiting++;
        if (queue.push({ row: toRow(cert, opts, queue.length), resolve, reject }) === 1) setImmediate(() => void flush());
      }),
    stats: () => ({ queueDepth: waiting }),
  };
}
