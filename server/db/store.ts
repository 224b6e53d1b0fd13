// The registry's narrow interface. Drivers (SQLite, later PostgreSQL) implement it;
// nothing outside server/db sees a driver type.

export interface IssuedCertificate {
  serial: string;
  uuid: string;
  subject: string;
  hardwareId: string;
  name: string;
  production: boolean;
  notBefore: Date;
  notAfter: Date;
  pem: string;
  issuedAt: Date;
  clientAddress: string;
  requestId: string;
  /** Partially detached: the upstream PUT body, queued in the same transaction. */
  upstreamBody?: string;
  /** SHA-256 (hex) of the certificate's SubjectPublicKeyInfo. */
  keySha256: string;
  /** Token enrollment: the lot that admitted the device (counted against its max-devices when the device is new). */
  lot?: string;
  /**
   * Renewal (EST simplereenroll): the serial of the certificate this one replaces. It
   * must be the device's current, unrevoked certificate; it is recorded as superseded.
   */
  renews?: string;
}

export type LotProduction = 'required' | 'forbidden' | 'any';
export type LotApproval = 'auto' | 'manual' | 'preauthorized';

/** A production lot; its enrollment token is never stored, only its SHA-256. */
export interface Lot {
  name: string;
  tokenSha256: string;
  createdAt: Date;
  expiresAt: Date | null;
  maxDevices: number | null;
  hwidPattern: string | null;
  deviceGroup: string | null;
  production: LotProduction;
  approval: LotApproval;
  revokedAt: Date | null;
  admitted: number;
}

export type NewLot = Omit<Lot, 'revokedAt' | 'admitted'>;

export type ApprovalStatus = 'pending' | 'approved' | 'rejected';

export interface Approval {
  uuid: string;
  keySha256: string;
  hardwareId: string;
  name: string;
  clientAddress: string;
  lot: string;
  firstSeen: Date;
  lastSeen: Date;
  attempts: number;
  status: ApprovalStatus;
  decidedAt: Date | null;
}

export type AdminRole = 'viewer' | 'operator' | 'admin';

/** A bearer token of the admin API; only its SHA-256 is stored. */
export interface AdminToken {
  name: string;
  role: AdminRole;
  tokenSha256: string;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface AuditEntry {
  id: number;
  at: Date;
  actor: string;
  action: string;
  target: string;
  address: string;
  requestId: string;
  detail: string;
}

export interface Preauthorization {
  uuid: string;
  keySha256: string | null;
  hardwareId: string | null;
  name: string | null;
  lot: string | null;
  createdAt: Date;
}

/** A certificate as the registry keeps it. */
export type StoredCertificate = Omit<IssuedCertificate, 'upstreamBody' | 'keySha256' | 'lot' | 'renews'> & {
  revokedAt: Date | null;
  revocationReason: string | null;
  /** Renewed: the serial of the certificate that replaced this one. */
  supersededBy: string | null;
  supersededAt: Date | null;
};

/** A revoked certificate, as the CRL lists it. */
export interface Revocation {
  serial: string;
  uuid: string;
  revokedAt: Date;
  reason: string;
}

/**
 * A retry: the UUID's current certificate has this very key, so that certificate is
 * the answer and nothing new was recorded (but the device's repeat counter).
 */
export interface Repeat {
  serial: string;
  pem: string;
  /** The upstream delivery of that certificate, when there is one. */
  delivery: OutboxStatus | null;
}

export type OutboxStatus = 'pending' | 'delivered' | 'failed';

export interface OutboxEntry {
  serial: string;
  uuid: string;
  body: string;
  status: OutboxStatus;
  attempts: number;
  /** Attempts made before the last operator retry; back-off and give-up count from here. */
  attemptsBeforeRetry: number;
  nextAttemptAt: Date;
  lastError: string;
  createdAt: Date;
  deliveredAt: Date | null;
}

export interface OutboxSummary {
  pending: number;
  failed: number;
  delivered: number;
  oldestPendingAgeSeconds: number | null;
  /** Deliveries are paused after the upstream refused the token. */
  paused: UpstreamPause | null;
}

export interface UpstreamPause {
  until: Date;
  reason: string;
  pausedAt: Date;
}

export interface Device {
  uuid: string;
  name: string;
  hardwareId: string;
  production: boolean;
  serial: string;
  firstRegisteredAt: Date;
  lastRegisteredAt: Date;
  registrations: number;
  /** Retries answered with the current certificate. */
  repeats: number;
  keySha256: string | null;
  /** the production lot it was first admitted through (token enrollment) */
  lot: string | null;
}

export interface RekeyAllowance {
  uuid: string;
  allowedAt: Date;
  reason: string;
  usedAt: Date | null;
  usedSerial: string | null;
}

export interface DeniedDevice {
  uuid: string;
  name: string;
  reason: string;
  deniedAt: Date;
}

export interface RecordOptions {
  /** Refuse (conflict) a new certificate for a UUID that already has one (a retry with its key still gets it). */
  rejectReregistration: boolean;
  /**
   * A registered UUID with a different key: 'deny' refuses it (409) unless an operator
   * allowed one re-key; 'allow' issues (the reference server's behaviour).
   */
  rekey: 'deny' | 'allow';
}

/** The CRL made once for every server of a registry. */
export interface StoredCrl {
  der: Buffer;
  number: number;
  /** the registry's revocation revision it lists */
  revision: number;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: number;
}

/** One check of /readyz: what it is, whether it passes, and a line for the operator. */
export interface ReadinessCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** The writer thread, for metrics and /readyz. */
export interface WriterStats {
  state: 'running' | 'restarting' | 'closed';
  queueDepth: number;
  restarts: number;
}

export interface Page {
  limit: number;
  offset: number;
}

export interface Store {
  /**
   * Records an issued certificate and updates its device in one transaction,
   * committed when the promise resolves. Resolves a Repeat (and records nothing new)
   * when the UUID's current certificate has the same key. Throws KilnError 'denied'
   * when the UUID is on the deny-list, 'conflict' when re-registration or a re-key is
   * refused or the serial is taken.
   */
  recordIssuance(cert: IssuedCertificate, opts: RecordOptions): Promise<Repeat | undefined>;
  /** Lets each UUID register once with a new key; throws 'not_found' (and changes nothing) if one is unknown. */
  allowRekey(uuids: string[], reason: string, now: Date): Promise<RekeyAllowance[]>;
  rekeyAllowance(uuid: string): Promise<RekeyAllowance | undefined>;
  findDenied(uuid: string): Promise<DeniedDevice | undefined>;
  getDevice(uuid: string): Promise<Device | undefined>;
  listDevices(page: Page): Promise<Device[]>;
  certificatesOf(uuid: string): Promise<StoredCertificate[]>;
  certificate(serial: string): Promise<StoredCertificate | undefined>;
  /** Adds UUIDs to the deny-list (idempotent); returns the entries. */
  deny(uuids: string[], reason: string, now: Date): Promise<DeniedDevice[]>;
  /** Removes devices and denies their UUIDs; throws 'not_found' (and changes nothing) if one is unknown. */
  deleteDevices(uuids: string[], reason: string, now: Date): Promise<void>;
  listDenied(page: Page): Promise<DeniedDevice[]>;
  /** Lifts denials; throws 'not_found' (and changes nothing) if one is not denied. */
  deleteDenied(uuids: string[]): Promise<void>;
  /** Pending deliveries that are due, oldest first. */
  dueOutbox(now: Date, limit: number): Promise<OutboxEntry[]>;
  updateOutbox(
    serial: string,
    change: Pick<OutboxEntry, 'status' | 'attempts' | 'nextAttemptAt' | 'lastError' | 'deliveredAt'>,
  ): Promise<void>;
  outboxSummary(now: Date): Promise<OutboxSummary>;
  listOutbox(filter: { status?: OutboxStatus }, page: Page): Promise<OutboxEntry[]>;
  /**
   * Lifts an upstream pause and makes undelivered deliveries (all, or those of the given
   * UUIDs) due now, keeping their attempt count and last error; returns how many.
   * Throws 'not_found' (and changes nothing) when a given UUID has no delivery.
   */
  retryOutbox(uuids: string[] | undefined, now: Date): Promise<number>;
  /** Pauses every delivery until `until` (the upstream refused the token). */
  pauseUpstream(pause: UpstreamPause): Promise<void>;
  /** The pause in force at `now`, if any. */
  upstreamPause(now: Date): Promise<UpstreamPause | undefined>;
  createLot(lot: NewLot): Promise<Lot>;
  getLot(name: string): Promise<Lot | undefined>;
  lotByTokenHash(tokenSha256: string): Promise<Lot | undefined>;
  listLots(): Promise<Lot[]>;
  /** Throws 'not_found' for an unknown lot. */
  revokeLot(name: string, now: Date): Promise<Lot>;
  /** Throws 'not_found' for an unknown lot. */
  rotateLotToken(name: string, tokenSha256: string): Promise<Lot>;
  approval(uuid: string): Promise<Approval | undefined>;
  /** A manual lot's device asked (again): recorded as pending, or its last-seen and attempts updated. */
  notePending(a: Omit<Approval, 'firstSeen' | 'lastSeen' | 'attempts' | 'status' | 'decidedAt'>, now: Date): Promise<Approval>;
  listApprovals(filter: { status?: ApprovalStatus }, page: Page): Promise<Approval[]>;
  /**
   * Approves or rejects pending (or earlier decided) devices; a rejection also denies the
   * UUID. Throws 'not_found' (and changes nothing) when a UUID has no approval request.
   */
  decideApprovals(uuids: string[], decision: 'approved' | 'rejected', now: Date): Promise<Approval[]>;
  preauthorization(uuid: string): Promise<Preauthorization | undefined>;
  /** Adds or replaces pre-authorizations, all or none. */
  importPreauthorized(rows: Omit<Preauthorization, 'createdAt'>[], now: Date): Promise<number>;
  createAdminToken(t: Omit<AdminToken, 'revokedAt'>): Promise<AdminToken>;
  adminTokenByHash(tokenSha256: string): Promise<AdminToken | undefined>;
  listAdminTokens(): Promise<AdminToken[]>;
  /** Throws 'not_found' for an unknown name. */
  revokeAdminToken(name: string, now: Date): Promise<AdminToken>;
  appendAudit(entry: Omit<AuditEntry, 'id'>): Promise<void>;
  /** Newest first. */
  listAudit(page: Page): Promise<AuditEntry[]>;
  /**
   * Revokes every good certificate of the given UUIDs and the given serials, in one
   * transaction; returns what is revoked now (already revoked ones included, with their
   * first time and reason). Throws 'not_found' (and changes nothing) for a UUID with no
   * certificate or an unknown serial.
   */
  revoke(target: { uuids?: string[]; serials?: string[] }, reason: string, now: Date): Promise<Revocation[]>;
  /** Every revoked certificate, for the CRL. */
  revokedCertificates(): Promise<Revocation[]>;
  /** Bumped by every revocation: a server regenerates its CRL when it changes. */
  crlRevision(): Promise<number>;
  /** The next CRL number (monotonic across restarts and replicas). */
  nextCrlNumber(): Promise<number>;
  /** The CRL made for every server of this registry, when one was made. */
  publishedCrl(): Promise<StoredCrl | undefined>;
  /** Its number alone (0: none yet): what servers poll, without reading the CRL itself. */
  publishedCrlNumber(): Promise<number>;
  /** Claims the making of the next CRL until `until`; false while another server's claim runs. */
  claimCrl(now: Date, until: Date): Promise<boolean>;
  /** Stores a new CRL for every server, and lets the claim go. */
  saveCrl(crl: StoredCrl): Promise<void>;
  ping(): Promise<void>;
  /** The registry's readiness checks (writer round trip, the file, free disk), each named. */
  readiness(): Promise<ReadinessCheck[]>;
  /** The writer thread's state, when records are committed on one. */
  writerStats(): WriterStats | undefined;
  /** Tests only: the writer thread, to kill it. */
  writerThreadForTests(): import('node:worker_threads').Worker | undefined;
  close(): Promise<void>;
}
