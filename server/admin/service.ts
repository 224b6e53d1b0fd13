// The operations an operator performs on the registry, the same for kilnctl on a local
// registry and for the admin API: checked input, the store, and one audit entry for
// every change (who, what, on what, when, from where, which request; never a secret).
import { KilnError } from '../../pki/errors.js';
import { isCanonicalUuid } from '../../pki/policy.js';
import type {
  Approval,
  AuditEntry,
  DeniedDevice,
  Device,
  Lot,
  LotApproval,
  LotProduction,
  OutboxEntry,
  OutboxStatus,
  OutboxSummary,
  Page,
  Preauthorization,
  RekeyAllowance,
  Revocation,
  StoredCertificate,
  Store,
} from '../db/store.js';
import { newEnrollmentToken, tokenSha256 } from '../enrollment.js';
import type { RevocationReason } from '../../pki/crl.js';

/** Who does it: `token:<name>` over the API, `local:<user>` for kilnctl on the registry. */
export interface Actor {
  name: string;
  address: string;
  requestId: string;
}

export type LotView = Omit<Lot, 'tokenSha256'>;
export type DeliveryView = Omit<OutboxEntry, 'body'>;

export interface DeviceView {
  device: Device | null;
  denied: DeniedDevice | null;
  rekeyAllowance: RekeyAllowance | null;
  certificates: StoredCertificate[];
}

export interface NewLotInput {
  name: string;
  expiresAt?: Date;
  maxDevices?: number;
  hwidPattern?: string;
  group?: string;
  production?: LotProduction;
  approval?: LotApproval;
}

export interface AdminApi {
  listDevices(page: Page): Promise<Device[]>;
  showDevice(uuid: string): Promise<DeviceView>;
  /** Denies UUIDs; with `revoke`, also revokes their certificates (keyCompromise). */
  deny(uuids: string[], reason: string, opts?: { revoke?: boolean }): Promise<DeniedDevice[]>;
  /** Deletes devices, denies their UUIDs and revokes their certificates (cessationOfOperation). */
  deleteDevices(uuids: string[], reason: string): Promise<{ deleted: string[]; revoked: Revocation[] }>;
  allowRekey(uuids: string[], reason: string): Promise<RekeyAllowance[]>;
  /** Revokes every certificate of the UUIDs and the given serials; the CRL follows within seconds. */
  revoke(target: { uuids?: string[]; serials?: string[] }, reason: RevocationReason): Promise<Revocation[]>;
  listDenied(page: Page): Promise<DeniedDevice[]>;
  removeDenied(uuids: string[]): Promise<{ allowed: string[] }>;
  preauthorize(rows: Omit<Preauthorization, 'createdAt'>[]): Promise<{ imported: number }>;
  createLot(input: NewLotInput): Promise<{ lot: LotView; token: string }>;
  listLots(): Promise<LotView[]>;
  showLot(name: string): Promise<LotView>;
  revokeLot(name: string): Promise<LotView>;
  rotateLotToken(name: string): Promise<{ lot: LotView; token: string }>;
  listApprovals(filter: { all: boolean }, page: Page): Promise<Approval[]>;
  decideApprovals(uuids: string[], decision: 'approved' | 'rejected'): Promise<Approval[]>;
  upstreamStatus(): Promise<OutboxSummary>;
  listDeliveries(filter: { status?: OutboxStatus }, page: Page): Promise<DeliveryView[]>;
  retryDeliveries(uuids?: string[]): Promise<{ requeued: number }>;
  listAudit(page: Page): Promise<AuditEntry[]>;
}

// Factory names are URL path segments upstream (/ota/factories/<factory>/) and the OU of
// every certificate; owner ids are hex; lots and groups follow the same rule. Letters,
// digits, '.', '_' and '-', starting with a letter or digit, at most 64: every
// FoundriesFactory name fits, and nothing else slips in.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const bad = (msg: string): KilnError => new KilnError('usage', msg);

export function checkUuids(uuids: string[]): string[] {
  if (uuids.length === 0) throw bad('name at least one device UUID');
  for (const u of uuids) if (!isCanonicalUuid(u)) throw bad(`"${String(u).slice(0, 40)}" is not a device UUID`);
  return [...new Set(uuids.map((u) => u.toLowerCase()))];
}

export function checkLotName(what: string, v: string): string {
  if (!NAME_RE.test(v))
    throw bad(
      `${what} ${JSON.stringify(String(v).slice(0, 70))}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  return v;
}

const shown = ({ tokenSha256: _hash, ...lot }: Lot): LotView => lot;
const delivery = ({ body: _body, ...e }: OutboxEntry): DeliveryView => e;

/** One audit entry: who (the actor), what, on what, when; the detail never holds a secret. */
export function appendAudit(
  store: Store,
  actor: Actor,
  at: Date,
  action: string,
  target: string,
  detail: Record<string, unknown> = {},
): Promise<void> {
  return store.appendAudit({
    at,
    actor: actor.name,
    action,
    target,
    address: actor.address,
    requestId: actor.requestId,
    detail: JSON.stringify(detail),
  });
}

export function createAdminService(store: Store, actor: Actor, clock: () => Date = () => new Date()): AdminApi {
  const audit = (action: string, target: string, detail: Record<string, unknown> = {}): Promise<void> =>
    appendAudit(store, actor, clock(), action, target, detail);
  const lotOrFail = async (name: string): Promise<Lot> => {
    const lot = await store.getLot(checkLotName('lot', name));
    if (!lot) throw new KilnError('not_found', `no lot named ${name}`);
    return lot;
  };

  return {
    listDevices: (page) => store.listDevices(page),
    async showDevice(uuid) {
      const [id] = checkUuids([uuid]);
      const [device, certificates, denied, rekeyAllowance] = await Promise.all([
        store.getDevice(id),
        store.certificatesOf(id),
        store.findDenied(id),
        store.rekeyAllowance(id),
      ]);
      if (!device && !certificates.length && !denied) throw new KilnError('not_found', `unknown device ${id}`);
      return { device: device ?? null, denied: denied ?? null, rekeyAllowance: rekeyAllowance ?? null, certificates };
    },
    async deny(uuids, reason, opts = {}) {
      const ids = checkUuids(uuids);
      const out = await store.deny(ids, reason, clock());
      let revoked = 0;
      if (opts.revoke) {
        // only devices that have certificates: a UUID denied in advance has none to revoke
        const known = (await Promise.all(ids.map(async (u) => ((await store.certificatesOf(u)).length ? u : undefined)))).filter(
          (u): u is string => !!u,
        );
        if (known.length) revoked = (await store.revoke({ uuids: known }, 'keyCompromise', clock())).length;
      }
      // one change, one entry
      await audit('devices.deny', ids.join(','), opts.revoke ? { reason, revoked, revocationReason: 'keyCompromise' } : { reason });
      return out;
    },
    async deleteDevices(uuids, reason) {
      const ids = checkUuids(uuids);
      await store.deleteDevices(ids, reason, clock());
      const revoked = await store.revoke({ uuids: ids }, 'cessationOfOperation', clock());
      await audit('devices.delete', ids.join(','), { reason, revoked: revoked.length, revocationReason: 'cessationOfOperation' });
      return { deleted: ids, revoked };
    },
    async revoke(target, reason) {
      const uuids = target.uuids?.length ? checkUuids(target.uuids) : undefined;
      const serials = target.serials?.map((s) => {
        if (!/^[0-9a-fA-F]{1,64}$/.test(s)) throw bad(`"${String(s).slice(0, 70)}" is not a certificate serial (hex)`);
        // as the registry writes serials: lower-case hex, whole bytes, no leading zero bytes
        const hex = s.toLowerCase();
        return (hex.length % 2 ? '0' + hex : hex).replace(/^(00)+(?=.)/, '');
      });
      if (!uuids && !serials?.length) throw bad('name device UUIDs or certificate serials to revoke');
      const out = await store.revoke({ uuids, serials }, reason, clock());
      await audit('devices.revoke', [...(uuids ?? []), ...(serials ?? [])].join(','), { reason });
      return out;
    },
    async allowRekey(uuids, reason) {
      const ids = checkUuids(uuids);
      const out = await store.allowRekey(ids, reason, clock());
      await audit('devices.allow-rekey', ids.join(','), { reason });
      return out;
    },
    listDenied: (page) => store.listDenied(page),
    async removeDenied(uuids) {
      const ids = checkUuids(uuids);
      await store.deleteDenied(ids);
      await audit('denied.remove', ids.join(','));
      return { allowed: ids };
    },
    async preauthorize(rows) {
      const known = new Set((await store.listLots()).map((l) => l.name));
      rows.forEach((r, i) => {
        if (!isCanonicalUuid(r.uuid)) throw bad(`row ${i + 1}: "${String(r.uuid).slice(0, 40)}" is not a device UUID`);
        if (r.lot !== null && !known.has(r.lot)) throw bad(`row ${i + 1}: no lot named ${String(r.lot).slice(0, 64)}`);
        if (r.keySha256 !== null && !/^[0-9a-f]{64}$/.test(r.keySha256))
          throw bad(`row ${i + 1}: keySha256 must be 64 lowercase hex digits`);
      });
      const imported = await store.importPreauthorized(rows, clock());
      await audit('devices.preauthorize', `${imported} devices`, { uuids: rows.length <= 20 ? rows.map((r) => r.uuid) : undefined });
      return { imported };
    },
    async createLot(input) {
      checkLotName('lot', input.name);
      if (input.group !== undefined) checkLotName('group', input.group);
      if (input.maxDevices !== undefined && (!Number.isInteger(input.maxDevices) || input.maxDevices < 1))
        throw bad('maxDevices must be a whole number >= 1');
      if (input.hwidPattern !== undefined && !/^[A-Za-z0-9._+*?-]{1,64}$/.test(input.hwidPattern))
        throw bad(`hardware id pattern ${input.hwidPattern}: a glob of letters, digits, '.', '_', '+', '-', '*' and '?'`);
      const token = newEnrollmentToken();
      const lot = await store.createLot({
        name: input.name,
        tokenSha256: tokenSha256(token),
        createdAt: clock(),
        expiresAt: input.expiresAt ?? null,
        maxDevices: input.maxDevices ?? null,
        hwidPattern: input.hwidPattern ?? null,
        deviceGroup: input.group ?? null,
        production: input.production ?? 'any',
        approval: input.approval ?? 'auto',
      });
      const { tokenSha256: _h, createdAt: _c, ...settings } = lot;
      await audit('lots.create', lot.name, settings);
      return { lot: shown(lot), token };
    },
    listLots: async () => (await store.listLots()).map(shown),
    showLot: async (name) => shown(await lotOrFail(name)),
    async revokeLot(name) {
      await lotOrFail(name);
      const lot = await store.revokeLot(name, clock());
      await audit('lots.revoke', name);
      return shown(lot);
    },
    async rotateLotToken(name) {
      await lotOrFail(name);
      const token = newEnrollmentToken();
      const lot = await store.rotateLotToken(name, tokenSha256(token));
      await audit('lots.rotate-token', name);
      return { lot: shown(lot), token };
    },
    listApprovals: (filter, page) => store.listApprovals({ status: filter.all ? undefined : 'pending' }, page),
    async decideApprovals(uuids, decision) {
      const ids = checkUuids(uuids);
      const out = await store.decideApprovals(ids, decision, clock());
      await audit(decision === 'approved' ? 'approvals.approve' : 'approvals.reject', ids.join(','));
      return out;
    },
    upstreamStatus: () => store.outboxSummary(clock()),
    listDeliveries: async (filter, page) => (await store.listOutbox(filter, page)).map(delivery),
    async retryDeliveries(uuids) {
      const ids = uuids && uuids.length ? checkUuids(uuids) : undefined;
      const requeued = await store.retryOutbox(ids, clock());
      await audit('upstream.retry', ids ? ids.join(',') : 'all', { requeued });
      return { requeued };
    },
    listAudit: (page) => store.listAudit(page),
  };
}
