// Recording issued certificates: the /sign hot path. Statements are prepared
// once and bound positionally; a batch shares one transaction (one fsync).
// Refusals (deny-list, re-registration, serial taken) are found by reads before
// a record writes anything, so a batch normally runs without a SAVEPOINT per
// record; if a statement fails half-way through a record, the batch is rolled
// back and run again with each record in its own SAVEPOINT, so it fails alone.
import type Database from 'better-sqlite3';
import { KilnError } from '../../../pki/errors.js';
import type { IssuedCertificate, RecordOptions } from '../store.js';

/**
 * One record as it crosses to the writer thread: primitives only, in the order
 * they are bound (cheaper to clone than an object with Dates, and to bind).
 */
export type RecordRow = [
  serial: string,
  uuid: string,
  subject: string,
  hardwareId: string,
  name: string,
  production: 0 | 1,
  notBefore: number,
  notAfter: number,
  pem: string,
  issuedAt: number,
  clientAddress: string,
  requestId: string,
  upstreamBody: string | null,
  rejectReregistration: 0 | 1,
];

export const toRecordRow = (c: IssuedCertificate, o: RecordOptions): RecordRow => [
  c.serial,
  c.uuid,
  c.subject,
  c.hardwareId,
  c.name,
  c.production ? 1 : 0,
  c.notBefore.getTime(),
  c.notAfter.getTime(),
  c.pem,
  c.issuedAt.getTime(),
  c.clientAddress,
  c.requestId,
  c.upstreamBody ?? null,
  o.rejectReregistration ? 1 : 0,
];

/** Per item: undefined when committed, else the refusal. */
export type RecordOutcome = KilnError | undefined;

export interface Recorder {
  /** Commits what it can of the batch; throws only when the commit itself fails. */
  recordBatch(rows: RecordRow[]): RecordOutcome[];
}

export function createRecorder(sqlite: Database.Database): Recorder {
  const hot = {
    denied: sqlite.prepare<[string], { one: number }>('SELECT 1 AS one FROM denied_devices WHERE uuid = ?'),
    device: sqlite.prepare<[string], { one: number }>('SELECT 1 AS one FROM devices WHERE uuid = ?'),
    serialTaken: sqlite.prepare<[string], { one: number }>('SELECT 1 AS one FROM certificates WHERE serial = ?'),
    insertCert: sqlite.prepare(
      `INSERT INTO certificates (serial, uuid, subject, hardware_id, name, production, not_before, not_after, pem, issued_at, client_address, request_id)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertOutbox: sqlite.prepare(
      `INSERT INTO outbox (serial, uuid, body, status, attempts, next_attempt_at, last_error, created_at)
       VALUES (?, ?, ?, 'pending', 0, ?, '', ?)`,
    ),
    upsertDevice: sqlite.prepare(
      `INSERT INTO devices (uuid, name, hardware_id, production, serial, first_registered_at, last_registered_at, registrations)
       VALUES (?, ?, ?, ?, ?, ?, ?, 1)
       ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, hardware_id = excluded.hardware_id, production = excluded.production,
         serial = excluded.serial, last_registered_at = excluded.last_registered_at, registrations = devices.registrations + 1`,
    ),
  };

  /** The reads that refuse a record, before it writes anything. */
  const refusal = (r: RecordRow): KilnError | undefined => {
    const [serial, uuid] = r;
    if (hot.denied.get(uuid)) return new KilnError('denied', `device ${uuid} is on the deny-list`);
    if (r[13] && hot.device.get(uuid)) return new KilnError('conflict', `device ${uuid} is already registered`);
    if (hot.serialTaken.get(serial))
      return new KilnError('conflict', `serial ${serial} is already used (re-registration with UUID serials)`);
    return undefined;
  };

  const write = (r: RecordRow): void => {
    const [
      serial,
      uuid,
      subject,
      hardwareId,
      name,
      production,
      notBefore,
      notAfter,
      pem,
      issuedAt,
      clientAddress,
      requestId,
      upstreamBody,
    ] = r;
    hot.insertCert.run(serial, uuid, subject, hardwareId, name, production, notBefore, notAfter, pem, issuedAt, clientAddress, requestId);
    hot.upsertDevice.run(uuid, name, hardwareId, production, serial, issuedAt, issuedAt);
    if (upstreamBody !== null) hot.insertOutbox.run(serial, uuid, upstreamBody, issuedAt, issuedAt);
  };

  let began = false;
  const fast = sqlite.transaction((rows: RecordRow[]): RecordOutcome[] => {
    began = true;
    return rows.map((r) => {
      const refused = refusal(r);
      if (!refused) write(r);
      return refused;
    });
  });

  const recordOne = sqlite.transaction((r: RecordRow) => {
    const refused = refusal(r);
    if (refused) throw refused;
    write(r);
  });
  const careful = sqlite.transaction((rows: RecordRow[]): RecordOutcome[] =>
    rows.map((r): RecordOutcome => {
      try {
        recordOne(r); // a SAVEPOINT inside the batch's transaction
        return undefined;
      } catch (err) {
        return err instanceof KilnError ? err : new KilnError('unavailable', 'device registry is unavailable; try again', { cause: err });
      }
    }),
  );

  // IMMEDIATE: take the write lock up front, so a second writer process waits (busy_timeout) instead of failing on upgrade
  return {
    recordBatch: (rows) => {
      began = false;
      try {
        return fast.immediate(rows);
      } catch (err) {
        if (!began) throw err; // BEGIN itself failed (busy past busy_timeout): nothing to retry record by record
        return careful.immediate(rows);
      }
    },
  };
}

export interface Writer {
  record(cert: IssuedCertificate, opts: RecordOptions): Promise<void>;
  close(): Promise<void>;
}

/** Group commit on this thread: records arriving in one event-loop turn share a transaction. */
export function createInlineWriter(recorder: Recorder): Writer {
  let queue: { row: RecordRow; resolve: () => void; reject: (e: unknown) => void }[] = [];
  const flush = (): void => {
    const pending = queue;
    queue = [];
    let outcomes: RecordOutcome[];
    try {
      outcomes = recorder.recordBatch(pending.map((p) => p.row));
    } catch (err) {
      for (const p of pending) p.reject(err);
      return;
    }
    pending.forEach((p, i) => (outcomes[i] ? p.reject(outcomes[i]) : p.resolve()));
  };
  return {
    record: (cert, opts) =>
      new Promise((resolve, reject) => {
        if (queue.push({ row: toRecordRow(cert, opts), resolve, reject }) === 1) setImmediate(flush);
      }),
    async close() {
      if (queue.length) flush();
    },
  };
}
