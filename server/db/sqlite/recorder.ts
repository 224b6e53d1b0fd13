// Recording issued certificates: the /sign hot path. Statements are prepared
// once; a batch shares one transaction (one fsync) and each record runs in its
// own SAVEPOINT, so a refused record rolls back alone.
import type Database from 'better-sqlite3';
import { KilnError } from '../../../pki/errors.js';
import type { IssuedCertificate, RecordOptions } from '../store.js';

export interface RecordItem {
  cert: IssuedCertificate;
  opts: RecordOptions;
}

/** Per item: undefined when committed, else the refusal. */
export type RecordOutcome = KilnError | undefined;

export interface Recorder {
  /** Commits what it can of the batch; throws only when the commit itself fails. */
  recordBatch(items: RecordItem[]): RecordOutcome[];
}

export function createRecorder(sqlite: Database.Database): Recorder {
  const hot = {
    denied: sqlite.prepare<[string], { one: number }>('SELECT 1 AS one FROM denied_devices WHERE uuid = ?'),
    device: sqlite.prepare<[string], { one: number }>('SELECT 1 AS one FROM devices WHERE uuid = ?'),
    serialTaken: sqlite.prepare<[string], { one: number }>('SELECT 1 AS one FROM certificates WHERE serial = ?'),
    insertCert: sqlite.prepare(
      `INSERT INTO certificates (serial, uuid, subject, hardware_id, name, production, not_before, not_after, pem, issued_at, client_address, request_id)
       VALUES (@serial, @uuid, @subject, @hardwareId, @name, @production, @notBefore, @notAfter, @pem, @issuedAt, @clientAddress, @requestId)`,
    ),
    insertOutbox: sqlite.prepare(
      `INSERT INTO outbox (serial, uuid, body, status, attempts, next_attempt_at, last_error, created_at)
       VALUES (@serial, @uuid, @upstreamBody, 'pending', 0, @issuedAt, '', @issuedAt)`,
    ),
    upsertDevice: sqlite.prepare(
      `INSERT INTO devices (uuid, name, hardware_id, production, serial, first_registered_at, last_registered_at, registrations)
       VALUES (@uuid, @name, @hardwareId, @production, @serial, @issuedAt, @issuedAt, 1)
       ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, hardware_id = excluded.hardware_id, production = excluded.production,
         serial = excluded.serial, last_registered_at = excluded.last_registered_at, registrations = devices.registrations + 1`,
    ),
  };

  const recordOne = sqlite.transaction(({ cert, opts }: RecordItem) => {
    if (hot.denied.get(cert.uuid)) throw new KilnError('denied', `device ${cert.uuid} is on the deny-list`);
    if (opts.rejectReregistration && hot.device.get(cert.uuid))
      throw new KilnError('conflict', `device ${cert.uuid} is already registered`);
    if (hot.serialTaken.get(cert.serial))
      throw new KilnError('conflict', `serial ${cert.serial} is already used (re-registration with UUID serials)`);
    const row = {
      ...cert,
      production: cert.production ? 1 : 0,
      notBefore: cert.notBefore.getTime(),
      notAfter: cert.notAfter.getTime(),
      issuedAt: cert.issuedAt.getTime(),
    };
    const { upstreamBody, ...certRow } = row;
    hot.insertCert.run(certRow);
    hot.upsertDevice.run(certRow);
    if (upstreamBody !== undefined) hot.insertOutbox.run({ serial: row.serial, uuid: row.uuid, upstreamBody, issuedAt: row.issuedAt });
  });

  const batch = sqlite.transaction((items: RecordItem[]) =>
    items.map((item): RecordOutcome => {
      try {
        recordOne(item);
        return undefined;
      } catch (err) {
        return err instanceof KilnError ? err : new KilnError('unavailable', 'device registry is unavailable; try again', { cause: err });
      }
    }),
  );

  // IMMEDIATE: take the write lock up front, so a second writer process waits (busy_timeout) instead of failing on upgrade
  return { recordBatch: (items) => batch.immediate(items) };
}

export interface Writer {
  record(cert: IssuedCertificate, opts: RecordOptions): Promise<void>;
  close(): Promise<void>;
}

/** Group commit on this thread: records arriving in one event-loop turn share a transaction. */
export function createInlineWriter(recorder: Recorder): Writer {
  let queue: { item: RecordItem; resolve: () => void; reject: (e: unknown) => void }[] = [];
  const flush = (): void => {
    const pending = queue;
    queue = [];
    let outcomes: RecordOutcome[];
    try {
      outcomes = recorder.recordBatch(pending.map((p) => p.item));
    } catch (err) {
      for (const p of pending) p.reject(err);
      return;
    }
    pending.forEach((p, i) => (outcomes[i] ? p.reject(outcomes[i]) : p.resolve()));
  };
  return {
    record: (cert, opts) =>
      new Promise((resolve, reject) => {
        if (queue.push({ item: { cert, opts }, resolve, reject }) === 1) setImmediate(flush);
      }),
    async close() {
      if (queue.length) flush();
    },
  };
}
