// The registry's tables on PostgreSQL: the same tables and columns as on SQLite
// (server/db/sqlite/schema.ts), in PostgreSQL's types.
import { bigserial, boolean, customType, index, integer, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

const bytea = customType<{ data: Buffer; driverData: Buffer }>({ dataType: () => 'bytea' });

const at = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

export const certificates = pgTable(
  'certificates',
  {
    serial: text('serial').primaryKey(),
    uuid: text('uuid').notNull(),
    subject: text('subject').notNull(),
    hardwareId: text('hardware_id').notNull(),
    name: text('name').notNull(),
    production: boolean('production').notNull(),
    notBefore: at('not_before').notNull(),
    notAfter: at('not_after').notNull(),
    pem: text('pem').notNull(),
    issuedAt: at('issued_at').notNull(),
    clientAddress: text('client_address').notNull(),
    requestId: text('request_id').notNull(),
    /** Revocation: when, and the RFC 5280 reason; null while the certificate is good */
    revokedAt: at('revoked_at'),
    revocationReason: text('revocation_reason'),
    /** Renewal (EST simplereenroll): the certificate that replaced this one, and when */
    supersededBy: text('superseded_by'),
    supersededAt: at('superseded_at'),
  },
  (t) => [index('certificates_uuid_idx').on(t.uuid, t.issuedAt), index('certificates_revoked_idx').on(t.revokedAt)],
);

export const devices = pgTable('devices', {
  uuid: text('uuid').primaryKey(),
  name: text('name').notNull(),
  hardwareId: text('hardware_id').notNull(),
  production: boolean('production').notNull(),
  serial: text('serial').notNull(),
  firstRegisteredAt: at('first_registered_at').notNull(),
  lastRegisteredAt: at('last_registered_at').notNull(),
  registrations: integer('registrations').notNull(),
  /** SHA-256 of the current certificate's SubjectPublicKeyInfo: a retry with this key gets that certificate again */
  keySha256: text('key_sha256'),
  /** Retries answered with the current certificate (nothing new issued) */
  repeats: integer('repeats').notNull().default(0),
  /** The production lot the device was first admitted through (token enrollment) */
  lot: text('lot'),
});

/** One re-key an operator allowed for a UUID (`kilnctl devices allow-rekey`), used at most once. */
export const rekeyAllowances = pgTable('rekey_allowances', {
  uuid: text('uuid').primaryKey(),
  allowedAt: at('allowed_at').notNull(),
  reason: text('reason').notNull(),
  /** When a registration with a new key used it, and the serial it got; null while unused */
  usedAt: at('used_at'),
  usedSerial: text('used_serial'),
});

export const deniedDevices = pgTable('denied_devices', {
  uuid: text('uuid').primaryKey(),
  name: text('name').notNull(),
  reason: text('reason').notNull(),
  deniedAt: at('denied_at').notNull(),
});

/** Devices to create in the upstream device API (partially detached mode). */
export const outbox = pgTable(
  'outbox',
  {
    serial: text('serial').primaryKey(),
    uuid: text('uuid').notNull(),
    /** JSON body of the PUT: client.pem, name, group */
    body: text('body').notNull(),
    /** pending | delivered | failed */
    status: text('status').notNull(),
    attempts: integer('attempts').notNull(),
    /** attempts made before the last operator retry: back-off and give-up count from here */
    attemptsBeforeRetry: integer('attempts_before_retry').notNull().default(0),
    nextAttemptAt: at('next_attempt_at').notNull(),
    lastError: text('last_error').notNull(),
    createdAt: at('created_at').notNull(),
    deliveredAt: at('delivered_at'),
  },
  (t) => [index('outbox_due_idx').on(t.status, t.nextAttemptAt)],
);

/**
 * Deliveries are paused for everyone after the upstream refused the token (401/403):
 * one row, shared by the server and `kilnctl upstream`, so a pause survives a restart,
 * shows in `upstream status`, and `upstream retry` can lift it.
 */
export const upstreamPause = pgTable('upstream_pause', {
  id: integer('id').primaryKey(),
  until: at('until').notNull(),
  reason: text('reason').notNull(),
  pausedAt: at('paused_at').notNull(),
});

/** A production lot: who may enroll with its token, how many, and how they are admitted. */
export const lots = pgTable(
  'lots',
  {
    name: text('name').primaryKey(),
    /** SHA-256 (hex) of the enrollment token; the token itself is shown once and never stored */
    tokenSha256: text('token_sha256').notNull(),
    createdAt: at('created_at').notNull(),
    expiresAt: at('expires_at'),
    maxDevices: integer('max_devices'),
    /** glob over the hardware id (`*`, `?`), null: any */
    hwidPattern: text('hwid_pattern'),
    /** upstream device group for the lot's devices */
    deviceGroup: text('device_group'),
    /** required | forbidden | any */
    production: text('production').notNull(),
    /** auto | manual | preauthorized */
    approval: text('approval').notNull(),
    revokedAt: at('revoked_at'),
    /** devices admitted so far; exact, counted in the recording transaction */
    admitted: integer('admitted').notNull().default(0),
  },
  (t) => [uniqueIndex('lots_token_idx').on(t.tokenSha256)],
);

/** Devices of manual lots waiting for an operator, and the operator's decision. */
export const approvals = pgTable('approvals', {
  uuid: text('uuid').primaryKey(),
  keySha256: text('key_sha256').notNull(),
  hardwareId: text('hardware_id').notNull(),
  name: text('name').notNull(),
  clientAddress: text('client_address').notNull(),
  lot: text('lot').notNull(),
  firstSeen: at('first_seen').notNull(),
  lastSeen: at('last_seen').notNull(),
  attempts: integer('attempts').notNull(),
  /** pending | approved | rejected */
  status: text('status').notNull(),
  decidedAt: at('decided_at'),
});

/** Devices listed in advance for preauthorized lots. */
export const preauthorized = pgTable('preauthorized', {
  uuid: text('uuid').primaryKey(),
  /** SHA-256 (hex) of the SubjectPublicKeyInfo, when known in advance */
  keySha256: text('key_sha256'),
  hardwareId: text('hardware_id'),
  name: text('name'),
  /** the lot it may enroll through; null: any preauthorized lot */
  lot: text('lot'),
  createdAt: at('created_at').notNull(),
});

/** Bearer tokens of the admin API, by role; only a hash is stored. */
export const adminTokens = pgTable(
  'admin_tokens',
  {
    name: text('name').primaryKey(),
    /** viewer | operator | admin */
    role: text('role').notNull(),
    tokenSha256: text('token_sha256').notNull(),
    createdAt: at('created_at').notNull(),
    revokedAt: at('revoked_at'),
  },
  (t) => [uniqueIndex('admin_tokens_token_idx').on(t.tokenSha256)],
);

/** Every change an operator made, by the API or kilnctl; append-only (triggers refuse UPDATE and DELETE). */
export const auditLog = pgTable('audit_log', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  at: at('at').notNull(),
  /** `token:<name>` over the API, `local:<user>` for kilnctl on the registry */
  actor: text('actor').notNull(),
  action: text('action').notNull(),
  target: text('target').notNull(),
  address: text('address').notNull(),
  requestId: text('request_id').notNull(),
  /** JSON of the change's parameters (never a secret) */
  detail: text('detail').notNull(),
});

/** One row: the CRL's number and a revision that every revocation bumps (servers regenerate on a change). */
export const crlState = pgTable('crl_state', {
  id: integer('id').primaryKey(),
  number: integer('number').notNull(),
  revision: integer('revision').notNull(),
  /** The CRL the servers publish, made once for all of them: its DER, times, the revision it lists, and its entries */
  der: bytea('der'),
  thisUpdate: at('this_update'),
  nextUpdate: at('next_update'),
  madeRevision: integer('made_revision'),
  entries: integer('entries'),
  /** One server makes the next CRL; the others wait for it until this time */
  makingUntil: at('making_until'),
});
