// The device key in an HSM (contract §7): token "aktualizr", key label "tls"
// id 01 (sensitive, not extractable), certificate label "client" id 03.
import type { Handle } from 'pkcs11js';
import { KilnError } from '../../pki/errors.js';
import { createPkcs11Signer, destroyObjects, findObjects, generateEcKeyPair } from '../../pki/pkcs11/keys.js';
import { ckr, findSlot, openModule, openToken, type Token } from '../../pki/pkcs11/token.js';
import type { Signer } from '../../pki/signer.js';

export const HSM_TOKEN = 'aktualizr';
export const KEY_REF = { label: 'tls', id: Buffer.from([0x01]) };
export const CERT_REF = { label: 'client', id: Buffer.from([0x03]) };

export interface HsmOptions {
  module: string;
  pin: string;
  soPin?: string;
  force: boolean;
}

export interface DeviceHsm {
  signer: Signer;
  /** Stores the issued certificate in the token. */
  importCertificate(der: Buffer, subjectDer: Buffer): void;
  /** Removes the objects this run created (key pair, certificate). */
  rollback(): void;
  close(): void;
}

/** Initializes the "aktualizr" token with the SO PIN when there is none yet. */
async function ensureToken(o: HsmOptions): Promise<void> {
  const { lib, p11, release } = await openModule(o.module);
  try {
    if (findSlot(p11, { modulePath: o.module, token: HSM_TOKEN })) return;
    const blank = p11.C_GetSlotList(true).find((s) => !(p11.C_GetTokenInfo(s).flags & lib.CKF_TOKEN_INITIALIZED));
    if (!blank) throw new KilnError('unavailable', `no "${HSM_TOKEN}" token and no uninitialized token to create it in`);
    if (!o.soPin) throw new KilnError('usage', `the "${HSM_TOKEN}" token does not exist: pass the SO PIN (-S) to initialize it`);
    try {
      p11.C_InitToken(blank, o.soPin, HSM_TOKEN);
      const found = findSlot(p11, { modulePath: o.module, token: HSM_TOKEN });
      if (!found) throw new Error('token not found after initialization');
      const s = p11.C_OpenSession(found.slot, lib.CKF_SERIAL_SESSION | lib.CKF_RW_SESSION);
      try {
        p11.C_Login(s, lib.CKU_SO, o.soPin);
        p11.C_InitPIN(s, o.pin);
        p11.C_Logout(s);
      } finally {
        p11.C_CloseSession(s);
      }
    } catch (err) {
      if (err instanceof KilnError) throw err;
      throw new KilnError('unavailable', `cannot initialize the "${HSM_TOKEN}" token: ${ckr(err)}`, { cause: err });
    }
  } finally {
    release();
  }
}

export async function openDeviceHsm(o: HsmOptions): Promise<DeviceHsm> {
  await ensureToken(o);
  const t: Token = await openToken({ modulePath: o.module, token: HSM_TOKEN });
  const created: Handle[] = [];
  try {
    t.login(o.pin);
    const stale = findObjects(t, t.lib.CKO_PRIVATE_KEY, KEY_REF).length + findObjects(t, t.lib.CKO_CERTIFICATE, CERT_REF).length;
    if (stale && !o.force) {
      throw new KilnError(
        'conflict',
        `the "${HSM_TOKEN}" token already holds a "tls" key or "client" certificate; use --force 1 to replace them`,
      );
    }
    for (const cls of [t.lib.CKO_PRIVATE_KEY, t.lib.CKO_PUBLIC_KEY]) destroyObjects(t, cls, KEY_REF);
    destroyObjects(t, t.lib.CKO_CERTIFICATE, CERT_REF);
    const pair = generateEcKeyPair(t, { ...KEY_REF, curve: 'P-256' });
    created.push(pair.privateKey, pair.publicKey);
    const signer = createPkcs11Signer(t, KEY_REF, { sessions: 1 });
    return {
      signer,
      importCertificate(der, subjectDer) {
        try {
          created.push(
            t.p11.C_CreateObject(t.session, [
              { type: t.lib.CKA_CLASS, value: t.lib.CKO_CERTIFICATE },
              { type: t.lib.CKA_CERTIFICATE_TYPE, value: t.lib.CKC_X_509 },
              { type: t.lib.CKA_TOKEN, value: true },
              { type: t.lib.CKA_LABEL, value: CERT_REF.label },
              { type: t.lib.CKA_ID, value: CERT_REF.id },
              { type: t.lib.CKA_SUBJECT, value: subjectDer },
              { type: t.lib.CKA_VALUE, value: der },
            ]),
          );
        } catch (err) {
          throw new KilnError('unavailable', `cannot store the certificate in the HSM: ${ckr(err)}`, { cause: err });
        }
      },
      rollback() {
        for (const h of created.splice(0)) {
          try {
            t.p11.C_DestroyObject(t.session, h);
          } catch {
            /* already gone */
          }
        }
      },
      close: () => t.close(),
    };
  } catch (err) {
    for (const h of created) t.p11.C_DestroyObject(t.session, h);
    t.close();
    throw err;
  }
}
