// Key objects in a PKCS#11 token: finding them, generating them, and a Signer
// over a private key with a pool of sessions for concurrent signing.
import { createHash, createPublicKey } from 'node:crypto';
import type { Handle, Template } from 'pkcs11js';
import { bitString, decodeOne, oid, seq, TAG, uintFromBytes } from '../der.js';
import { KilnError } from '../errors.js';
import { OID } from '../oids.js';
import { algorithmForKey, type Signer } from '../signer.js';
import { ckr, type Token } from './token.js';

export interface KeyRef {
  label?: string;
  id?: Buffer;
}

const describeKey = (k: KeyRef): string =>
  [k.label !== undefined ? `label "${k.label}"` : '', k.id ? `id ${k.id.toString('hex')}` : ''].filter(Boolean).join(' and ');

export function findObjects(t: Token, cls: number, k: KeyRef): Handle[] {
  const template: Template = [{ type: t.lib.CKA_CLASS, value: cls }];
  if (k.label !== undefined) template.push({ type: t.lib.CKA_LABEL, value: k.label });
  if (k.id) template.push({ type: t.lib.CKA_ID, value: k.id });
  t.p11.C_FindObjectsInit(t.session, template);
  try {
    return t.p11.C_FindObjects(t.session, 64);
  } finally {
    t.p11.C_FindObjectsFinal(t.session);
  }
}

function attr(t: Token, h: Handle, type: number): Buffer {
  return t.p11.C_GetAttributeValue(t.session, h, [{ type }])[0].value as Buffer;
}

/** The public key of a key pair as SubjectPublicKeyInfo DER. */
export function publicKeySpki(t: Token, k: KeyRef, priv: Handle): Buffer {
  const keyType = attr(t, priv, t.lib.CKA_KEY_TYPE).readUIntLE(0, 4);
  const [pub] = findObjects(t, t.lib.CKO_PUBLIC_KEY, k);
  if (keyType === t.lib.CKK_EC) {
    if (!pub) throw new KilnError('config', `no public key with ${describeKey(k)} next to the private key in token "${t.label}"`);
    const params = attr(t, pub, t.lib.CKA_EC_PARAMS);
    let point = attr(t, pub, t.lib.CKA_EC_POINT);
    if (point[0] === TAG.OCTET_STRING) point = Buffer.from(decodeOne(point).body);
    return seq(seq(oid(OID.ecPublicKey), params), bitString(point));
  }
  if (keyType === t.lib.CKK_RSA) {
    const src = pub ?? priv;
    const n = attr(t, src, t.lib.CKA_MODULUS);
    const e = attr(t, src, t.lib.CKA_PUBLIC_EXPONENT);
    return seq(seq(oid(OID.rsaEncryption), Buffer.from([TAG.NULL, 0])), bitString(seq(uintFromBytes(n), uintFromBytes(e))));
  }
  throw new KilnError('config', `key with ${describeKey(k)} is neither EC nor RSA`);
}

/** PKCS#11 ECDSA gives r||s; X.509 wants DER SEQUENCE { r, s }. */
export function ecdsaRawToDer(raw: Buffer): Buffer {
  const half = raw.length / 2;
  return seq(uintFromBytes(raw.subarray(0, half)), uintFromBytes(raw.subarray(half)));
}

export interface Pkcs11SignerOptions {
  /** Sessions signing at once (default 4). */
  sessions?: number;
  /** Requests waiting for a session before new ones are refused (default 1024). */
  maxQueue?: number;
  describe?: Record<string, string>;
  /** Closes the token with the signer. */
  ownsToken?: boolean;
}

export function createPkcs11Signer(t: Token, k: KeyRef, opts: Pkcs11SignerOptions = {}): Signer {
  const [priv, extra] = findObjects(t, t.lib.CKO_PRIVATE_KEY, k);
  if (!priv) throw new KilnError('config', `no private key with ${describeKey(k)} in token "${t.label}"`);
  if (extra) throw new KilnError('config', `more than one private key with ${describeKey(k)} in token "${t.label}"`);
  const spkiDer = publicKeySpki(t, k, priv);
  const algorithm = algorithmForKey(createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }));
  const isEc = algorithm.oid !== OID.sha256WithRsa;
  const keyType = attr(t, priv, t.lib.CKA_KEY_TYPE).readUIntLE(0, 4);
  if (isEc !== (keyType === t.lib.CKK_EC)) throw new KilnError('config', 'PKCS#11 key type does not match its public key');

  const free: Handle[] = [];
  for (let i = 0; i < (opts.sessions ?? 4); i++) free.push(t.openSession());
  const waiting: ((s: Handle) => void)[] = [];
  const maxQueue = opts.maxQueue ?? 1024;
  let state = 'ready';
  let lastError: string | undefined;

  const acquire = (): Promise<Handle> => {
    const s = free.pop();
    if (s) return Promise.resolve(s);
    if (waiting.length >= maxQueue) return Promise.reject(new KilnError('temporary', 'the HSM is busy; try again'));
    return new Promise((resolve) => waiting.push(resolve));
  };
  const release = (s: Handle): void => {
    const next = waiting.shift();
    if (next) next(s);
    else free.push(s);
  };

  return {
    algorithm,
    spkiDer,
    async sign(data) {
      const session = await acquire();
      try {
        const mech = isEc ? { mechanism: t.lib.CKM_ECDSA } : { mechanism: t.lib.CKM_SHA256_RSA_PKCS };
        const input = isEc ? createHash(algorithm.hash).update(data).digest() : Buffer.from(data);
        t.p11.C_SignInit(session, mech, priv);
        const out = await t.p11.C_SignAsync(session, input, Buffer.alloc(1024));
        state = 'ready';
        return isEc ? ecdsaRawToDer(out) : Buffer.from(out);
      } catch (err) {
        if (err instanceof KilnError) throw err;
        state = 'error';
        lastError = ckr(err);
        throw new KilnError('unavailable', `HSM signing failed: ${lastError}`, { cause: err });
      } finally {
        release(session);
      }
    },
    describe: () => ({ backend: 'pkcs11', state, ...opts.describe, ...(lastError && state !== 'ready' ? { error: lastError } : {}) }),
    async close() {
      if (opts.ownsToken) t.close();
    },
  };
}

export interface GenerateOptions extends KeyRef {
  curve: 'P-256' | 'P-384';
}

const CURVE_OIDS = { 'P-256': OID.p256, 'P-384': OID.p384 } as const;

/** Generates an EC key pair in the token: private key sensitive and not extractable. */
export function generateEcKeyPair(t: Token, o: GenerateOptions): { publicKey: Handle; privateKey: Handle } {
  const common: Template = [{ type: t.lib.CKA_TOKEN, value: true }];
  if (o.label !== undefined) common.push({ type: t.lib.CKA_LABEL, value: o.label });
  if (o.id) common.push({ type: t.lib.CKA_ID, value: o.id });
  try {
    return t.p11.C_GenerateKeyPair(
      t.session,
      { mechanism: t.lib.CKM_EC_KEY_PAIR_GEN },
      [...common, { type: t.lib.CKA_EC_PARAMS, value: oid(CURVE_OIDS[o.curve]) }, { type: t.lib.CKA_VERIFY, value: true }],
      [
        ...common,
        { type: t.lib.CKA_PRIVATE, value: true },
        { type: t.lib.CKA_SENSITIVE, value: true },
        { type: t.lib.CKA_EXTRACTABLE, value: false },
        { type: t.lib.CKA_SIGN, value: true },
      ],
    );
  } catch (err) {
    throw new KilnError('unavailable', `cannot generate a key in token "${t.label}": ${ckr(err)}`, { cause: err });
  }
}

/** Destroys every object of a class with the label/id; returns how many. */
export function destroyObjects(t: Token, cls: number, k: KeyRef): number {
  const found = findObjects(t, cls, k);
  for (const h of found) t.p11.C_DestroyObject(t.session, h);
  return found.length;
}
