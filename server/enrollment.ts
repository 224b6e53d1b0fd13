// Who may register: the enrollment gate in front of signing. In `open` mode (the
// reference's behaviour) any valid CSR is signed. In `token` mode the device's auth
// header (OSF-TOKEN, what lmp-device-register already sends) must carry a production
// lot's enrollment token, and the lot decides: expiry, revocation, hardware ids,
// production, and how devices are admitted (auto, an operator's approval, or a list
// prepared in advance). The lot's device count is kept exact where the certificate is
// recorded (db/sqlite/recorder.ts).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { KilnError } from '../pki/errors.js';
import type { Lot, Store } from './db/store.js';

export type EnrollmentMode = 'open' | 'token';

/** Enrollment tokens: a recognisable prefix and 256 random bits. */
export const TOKEN_PREFIX = 'kiln_lot_';

export const newEnrollmentToken = (): string => TOKEN_PREFIX + randomBytes(32).toString('base64url');

export const tokenSha256 = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');

/** What the gate knows of a registration before it is signed. */
export interface EnrollmentRequest {
  token: string | undefined;
  uuid: string;
  keySha256: string;
  hardwareId: string;
  name: string;
  production: boolean;
  clientAddress: string;
  /** EST: the lot named in the URL (/.well-known/est/<lot>/) */
  lotLabel?: string;
  /** EST: the client authenticated with a bootstrap CA's certificate instead of a token */
  bootstrap?: boolean;
}

export interface Admission {
  /** the lot that admitted the device (token mode) */
  lot?: string;
  /** the lot's upstream device group */
  group?: string;
}

export interface EnrollmentGate {
  mode: EnrollmentMode;
  admit(req: EnrollmentRequest, now: Date): Promise<Admission>;
}

/** `*` and `?` globs over a hardware id, anchored. */
export function hwidMatches(pattern: string, hwid: string): boolean {
  const re = new RegExp(
    '^' +
      pattern
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.') +
      '$',
  );
  return re.test(hwid);
}

const refuse = (code: 'unauthorized' | 'denied' | 'conflict' | 'pending', msg: string): never => {
  throw new KilnError(code, msg);
};

export function createEnrollmentGate(mode: EnrollmentMode, store: Store, header: string): EnrollmentGate {
  if (mode === 'open') return { mode, admit: async () => ({}) };

  const findLot = async (token: string): Promise<Lot | undefined> => {
    const hash = tokenSha256(token);
    const lot = await store.lotByTokenHash(hash);
    // the index found it by hash; compare again in constant time all the same
    return lot && timingSafeEqual(Buffer.from(lot.tokenSha256, 'hex'), Buffer.from(hash, 'hex')) ? lot : undefined;
  };

  return {
    mode,
    async admit(req, now) {
      const token = req.token?.trim();
      let lot: Lot | undefined;
      if (token) {
        lot = await findLot(token);
        // says nothing about which lots exist
        if (!lot || (req.lotLabel !== undefined && lot.name !== req.lotLabel))
          return refuse('unauthorized', 'the enrollment token is not valid');
      } else if (req.bootstrap) {
        // a bootstrap CA's certificate stands for the lot the URL names
        if (req.lotLabel === undefined)
          return refuse(
            'unauthorized',
            'a bootstrap certificate enrolls into the lot named in the URL: /.well-known/est/<lot>/simpleenroll',
          );
        lot = await store.getLot(req.lotLabel);
        if (!lot) return refuse('unauthorized', `no lot named ${req.lotLabel}`);
      } else return refuse('unauthorized', `an enrollment token is required in the ${header} header`);
      if (lot.revokedAt) refuse('unauthorized', `lot ${lot.name} was revoked: its token no longer enrolls devices`);
      if (lot.expiresAt && lot.expiresAt <= now) refuse('denied', `lot ${lot.name} expired at ${lot.expiresAt.toISOString()}`);
      if (lot.hwidPattern && !hwidMatches(lot.hwidPattern, req.hardwareId))
        refuse('denied', `hardware id ${req.hardwareId} is not allowed in lot ${lot.name} (allowed: ${lot.hwidPattern})`);
      if (lot.production === 'required' && !req.production)
        refuse('denied', `lot ${lot.name} enrolls production devices only (the CSR has no businessCategory=production)`);
      if (lot.production === 'forbidden' && req.production) refuse('denied', `lot ${lot.name} does not enroll production devices`);

      if (lot.approval === 'preauthorized') {
        const pre = await store.preauthorization(req.uuid);
        if (!pre || (pre.lot !== null && pre.lot !== lot.name))
          refuse('denied', `device ${req.uuid} is not pre-authorized for lot ${lot.name}`);
        if (pre!.keySha256 !== null && pre!.keySha256 !== req.keySha256)
          refuse('denied', `device ${req.uuid}: its key does not match its pre-authorization (SHA-256 of the public key)`);
        if (pre!.hardwareId !== null && pre!.hardwareId !== req.hardwareId)
          refuse('denied', `device ${req.uuid}: hardware id ${req.hardwareId} does not match its pre-authorization (${pre!.hardwareId})`);
      } else if (lot.approval === 'manual') {
        const a = await store.approval(req.uuid);
        if (a?.status === 'rejected') refuse('denied', `device ${req.uuid} was rejected by an operator`);
        if (a && a.keySha256 !== req.keySha256)
          refuse(
            'conflict',
            a.status === 'approved'
              ? `device ${req.uuid} was approved with another key; this key is refused`
              : `device ${req.uuid} already awaits approval with another key`,
          );
        if (a?.status !== 'approved') {
          await store.notePending(
            {
              uuid: req.uuid,
              keySha256: req.keySha256,
              hardwareId: req.hardwareId,
              name: req.name,
              clientAddress: req.clientAddress,
              lot: lot.name,
            },
            now,
          );
          refuse('pending', `device ${req.uuid} awaits approval by an operator (lot ${lot.name}): kilnctl approvals approve ${req.uuid}`);
        }
      }
      return { lot: lot.name, group: lot.deviceGroup ?? undefined };
    },
  };
}
