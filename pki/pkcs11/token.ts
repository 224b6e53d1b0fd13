// Opening a PKCS#11 token: load the module once per process, find the slot,
// log in. pkcs11js is loaded lazily so nothing pays for it without an HSM.
import type { Handle, PKCS11 } from 'pkcs11js';
import { KilnError } from '../errors.js';

type Pkcs11Js = typeof import('pkcs11js');

let lib: Pkcs11Js | undefined;
const modules = new Map<string, { p11: PKCS11; refs: number }>();

export async function loadPkcs11js(): Promise<Pkcs11Js> {
  if (!lib) {
    try {
      const m = (await import('pkcs11js')) as Pkcs11Js & { default?: Pkcs11Js };
      lib = m.default ?? m;
    } catch (err) {
      throw new KilnError('config', 'PKCS#11 support needs the pkcs11js package, which is not installed', { cause: err });
    }
  }
  return lib;
}

/** CKR_* name of a PKCS#11 error, or the message. */
export function ckr(err: unknown): string {
  const m = /CKR_[A-Z_]+/.exec((err as Error)?.message ?? '');
  return m ? m[0] : ((err as Error)?.message ?? String(err));
}

export interface TokenRef {
  modulePath: string;
  /** token label */
  token?: string;
  serial?: string;
  slotId?: number;
}

export interface Token {
  lib: Pkcs11Js;
  p11: PKCS11;
  slot: Handle;
  label: string;
  /** A read-write session (logged in once `login` was called). */
  session: Handle;
  openSession(): Handle;
  login(pin: string | undefined): void;
  close(): void;
}

export async function openModule(modulePath: string): Promise<{ lib: Pkcs11Js; p11: PKCS11; release: () => void }> {
  const l = await loadPkcs11js();
  let entry = modules.get(modulePath);
  if (!entry) {
    const p11 = new l.PKCS11();
    try {
      p11.load(modulePath);
    } catch (err) {
      throw new KilnError('config', `cannot load PKCS#11 module ${modulePath}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
    }
    try {
      // signatures run on libuv's thread pool: the module must lock for itself
      p11.C_Initialize({ flags: l.CKF_OS_LOCKING_OK });
    } catch (err) {
      throw new KilnError('config', `PKCS#11 module ${modulePath} failed to initialize: ${ckr(err)}`, { cause: err });
    }
    entry = { p11, refs: 0 };
    modules.set(modulePath, entry);
  }
  entry.refs++;
  const e = entry;
  return {
    lib: l,
    p11: e.p11,
    release: () => {
      if (--e.refs > 0) return;
      modules.delete(modulePath);
      try {
        e.p11.C_Finalize();
        e.p11.close();
      } catch {
        /* already gone */
      }
    },
  };
}

const trim = (s: string): string => s.replace(/\0/g, '').trim();

/** Slots whose token matches the reference (all present tokens when it names none). */
export function findSlot(p11: PKCS11, ref: TokenRef): { slot: Handle; label: string } | undefined {
  for (const slot of p11.C_GetSlotList(true)) {
    const info = p11.C_GetTokenInfo(slot);
    const label = trim(info.label);
    if (ref.slotId !== undefined && slot.readUIntLE(0, Math.min(slot.length, 6)) !== ref.slotId) continue;
    if (ref.token !== undefined && label !== ref.token) continue;
    if (ref.serial !== undefined && trim(info.serialNumber) !== ref.serial) continue;
    return { slot, label };
  }
  return undefined;
}

export const describeRef = (ref: TokenRef): string =>
  ref.token !== undefined ? `token "${ref.token}"` : ref.serial !== undefined ? `token with serial ${ref.serial}` : `slot ${ref.slotId}`;

export async function openToken(ref: TokenRef): Promise<Token> {
  const { lib: l, p11, release } = await openModule(ref.modulePath);
  const found = findSlot(p11, ref);
  if (!found) {
    release();
    throw new KilnError('config', `no ${describeRef(ref)} in PKCS#11 module ${ref.modulePath}`);
  }
  const flags = l.CKF_SERIAL_SESSION | l.CKF_RW_SESSION;
  const sessions: Handle[] = [];
  const openSession = (): Handle => {
    const s = p11.C_OpenSession(found.slot, flags);
    sessions.push(s);
    return s;
  };
  const session = openSession();
  return {
    lib: l,
    p11,
    slot: found.slot,
    label: found.label,
    session,
    openSession,
    login(pin) {
      try {
        p11.C_Login(session, l.CKU_USER, pin);
      } catch (err) {
        const code = ckr(err);
        if (code === 'CKR_USER_ALREADY_LOGGED_IN') return;
        const why = code === 'CKR_PIN_INCORRECT' ? 'wrong PIN' : code === 'CKR_PIN_LOCKED' ? 'PIN locked' : code;
        throw new KilnError('config', `cannot log in to ${describeRef(ref)}: ${why} (${code})`, { cause: err });
      }
    },
    close() {
      for (const s of sessions.splice(0)) {
        try {
          p11.C_CloseSession(s);
        } catch {
          /* closed */
        }
      }
      release();
    },
  };
}
