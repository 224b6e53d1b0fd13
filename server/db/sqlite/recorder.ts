// Recording issued certificates: the /sign hot path. Statements are prepared
// once and bound positionally; a batch shares one transaction (one fsync).
// Refusals (deny-list, re-registration, serial taken) are found by reads before
// a record writes anything, so a batch normally runs without a SAVEPOINT per
// record; if a statement fails half-way through a record, the batch is rolled
// back and run again with each record in its own SAVEPOINT, so it fails alone.
import type Database from 'better-sqlite3';
import { KilnError } from '../../../pki/errors.js';
import type { IssuedCertificate, OutboxStatus, RecordOptions, Repeat } from '../store.js';

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
  keySha256: string,
  rekeyAllowed: 0 | 1,
  lot: string | null,
  renews: string | null,
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
  c.keySha256,
  o.rekey === 'allow' ? 1 : 0,
  c.lot ?? null,
  c.renews ?? null,
];

type Decision = KilnError | Repeat | 'rekey' | 'admit' | 'renew' | undefined;

/** Per item: undefined when committed, a Repeat when the device already has this key's certificate, else the refusal. */
export type RecordOutcome = KilnError | Repeat | undefined;

export interface Recorder {
  /** Commits what it can of the batch; throws only when the commit itself fails. */
  recordBatch(rows: RecordRow[]): RecordOutcome[];
}

export function createRecorder(sqlite: Database.Database): Recorder {
  const hot = {
    denied: sqlite.prepare<[string], { one: number }>('SELECT 1 AS one FROM denied_devices WHERE uuid = ?'),
    device: sqlite.prepare<[string], { serial: string; key: string | null }>(
      'SELECT serial, key_sha256 AS key FROM devices WHERE uuid = ?',
    ),
    current: sqlite.prepare<[string], { pem: string; subject: string; delivery: OutboxStatus | null }>(
      'SELECT c.pem AS pem, c.subject AS subject, o.status AS delivery FROM certificates c LEFT JOIN outbox o ON o.serial = c.serial WHERE c.serial = ?',
    ),
    repeat: sqlite.prepare('UPDATE devices SET repeats = repeats + 1 WHERE uuid = ?'),
    allowance: sqlite.prepare<[string], { one: number }>('SELECT 1 AS one FROM rekey_allowances WHERE uuid = ? AND used_at IS NULL'),
    useAllowance: sqlite.prepare('UPDATE rekey_allowances SET used_at = ?, used_serial = ? WHERE uuid = ? AND used_at IS NULL'),
    lot: sqlite.prepare<[string], { revoked: number | null; expires: number | null; max: number | null; admitted: number }>(
      'SELECT revoked_at AS revoked, expires_at AS expires, max_devices AS max, admitted FROM lots WHERE name = ?',
    ),
    admit: sqlite.prepare('UPDATE lots SET admitted = admitted + 1 WHERE name = ?'),
    renewed: sqlite.prepare<[string], { revoked: number | null }>('SELECT revoked_at AS revoked FROM certificates WHERE serial = ?'),
    supersede: sqlite.prepare('UPDATE certificates SET superseded_by = ?, superseded_at = ? WHERE serial = ?'),
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
      `INSERT INTO devices (uuid, name, hardware_id, production, serial, first_registered_at, last_registered_at, registrations, key_sha256, lot)
       VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
       ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, hardware_id = excluded.hardware_id, production = excluded.production,
         serial = excluded.serial, last_registered_at = excluded.last_registered_at, registrations = devices.registrations + 1,
         key_sha256 = excluded.key_sha256`,
    ),
  };

  /**
   * The reads that decide a record before it writes anything: a refusal, a Repeat
   * (the device already has this key's certificate: a lost 201, a retry), 'rekey'
   * (a new key an operator allowed, to be used up by the write), or undefined.
   */
  /**
   * A renewal, authenticated by the certificate it renews: that certificate must still be
   * the device's current one and unrevoked (a new key needs no operator). A retry of a
   * renewal whose answer was lost (the current certificate already has this key and
   * replaced the one presented) is answered with that certificate.
   */
  const decideRenewal = (r: RecordRow, renews: string, device: { serial: string; key: string | null } | undefined): Decision => {
    const uuid = r[1];
    if (!device) return new KilnError('denied', `device ${uuid} is not registered`);
    if (device.serial !== renews) {
      const current = hot.current.get(device.serial);
      if (device.key === r[14] && current && current.subject === r[2])
        return { serial: device.serial, pem: current.pem, delivery: current.delivery };
      return new KilnError('denied', `certificate ${renews} was replaced by ${device.serial}: renew with the current certificate`);
    }
    const old = hot.renewed.get(renews);
    if (!old) return new KilnError('denied', `certificate ${renews} is not in the registry`);
    if (old.revoked !== null) return new KilnError('denied', `certificate ${renews} is revoked`);
    if (hot.serialTaken.get(r[0])) return new KilnError('conflict', `serial ${r[0]} is already used (renewal with UUID serials)`);
    return 'renew';
  };

  const decide = (r: RecordRow): Decision => {
    const [serial, uuid] = r;
    if (hot.denied.get(uuid)) return new KilnError('denied', `device ${uuid} is on the deny-list`);
    const device = hot.device.get(uuid);
    const lotName = r[16];
    // a new device of a lot is counted against it (apply); a known one already was
    let admit = false;
    if (lotName !== null) {
      // the lot as it is now: revoked or expired since the request was checked, or full
      const lot = hot.lot.get(lotName);
      if (!lot || lot.revoked !== null)
        return new KilnError('unauthorized', `lot ${lotName} was revoked: its token no longer enrolls devices`);
      if (lot.expires !== null && lot.expires <= r[9])
        return new KilnError('denied', `lot ${lotName} expired at ${new Date(lot.expires).toISOString()}`);
      if (!device && lot.max !== null && lot.admitted >= lot.max)
        return new KilnError('denied', `lot ${lotName} is full: ${lot.admitted} of ${lot.max} devices enrolled`);
      admit = !device;
    }
    const renews = r[17];
    if (renews !== null) return decideRenewal(r, renews, device);
    let rekey = false;
    if (device) {
      const sameKey = device.key === r[14];
      if (sameKey) {
        // the same request again (a lost 201): the same key and the same subject
        const current = hot.current.get(device.serial);
        if (current && current.subject === r[2]) return { serial: device.serial, pem: current.pem, delivery: current.delivery };
      }
      if (r[13]) return new KilnError('conflict', `device ${uuid} is already registered`);
      if (!sameKey && !r[15]) {
        if (!hot.allowance.get(uuid))
          return new KilnError(
            'conflict',
            `device ${uuid} is registered with another key; if this is the same device with a new key, an operator can allow it once: kilnctl devices allow-rekey ${uuid}`,
          );
        rekey = true;
      }
    }
    if (hot.serialTaken.get(serial))
      return new KilnError('conflict', `serial ${serial} is already used (re-registration with UUID serials)`);
    return admit ? 'admit' : rekey ? 'rekey' : undefined;
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
      ,
      keySha256,
    ] = r;
    hot.insertCert.run(serial, uuid, subject, hardwareId, name, production, notBefore, notAfter, pem, issuedAt, clientAddress, requestId);
    // the lot is the one a device was first admitted through: kept on re-registration
    hot.upsertDevice.run(uuid, name, hardwareId, production, serial, issuedAt, issuedAt, keySha256, r[16]);
    if (upstreamBody !== null) hot.insertOutbox.run(serial, uuid, upstreamBody, issuedAt, issuedAt);
  };

  /** Carries out a decision: writes the record, or counts the repeat; returns the outcome. */
  const apply = (r: RecordRow, d: ReturnType<typeof decide>): RecordOutcome => {
    if (d instanceof KilnError) return d;
    if (d === undefined || d === 'rekey' || d === 'admit' || d === 'renew') {
      write(r);
      if (d === 'renew') hot.supersede.run(r[0], r[9], r[17]);
      if (d === 'rekey') hot.useAllowance.run(r[9], r[0], r[1]);
      // a new device of a lot: counted here, in the transaction that records it, so N never becomes N+1
      if (d === 'admit') hot.admit.run(r[16]);
      return undefined;
    }
    hot.repeat.run(r[1]);
    return d;
  };

  let began = false;
  const fast = sqlite.transaction((rows: RecordRow[]): RecordOutcome[] => {
    began = true;
    return rows.map((r) => apply(r, decide(r)));
  });

  const recordOne = sqlite.transaction((r: RecordRow): RecordOutcome => {
    const outcome = apply(r, decide(r));
    if (outcome instanceof KilnError) throw outcome;
    return outcome;
  });
  const careful = sqlite.transaction((rows: RecordRow[]): RecordOutcome[] =>
    rows.map((r): RecordOutcome => {
      try {
        return recordOne(r); // a SAVEPOINT inside the batch's transaction
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
  record(cert: IssuedCertificate, opts: RecordOptions): Promise<Repeat | undefined>;
  close(): Promise<void>;
}

/** Group commit on this thread: records arriving in one event-loop turn share a transaction. */
export function createInlineWriter(recorder: Recorder): Writer {
  let queue: { row: RecordRow; resolve: (r: Repeat | undefined) => void; reject: (e: unknown) => void }[] = [];
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
    pending.forEach((p, i) => {
      const o = outcomes[i];
      if (o instanceof KilnError) p.reject(o);
      else p.resolve(o);
    });
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
