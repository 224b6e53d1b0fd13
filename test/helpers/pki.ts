// Test fixtures: a factory PKI in a temp dir, device keys and CSRs shaped like lmp-device-register's.
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCsr, DEVICE_CSR_EXTENSIONS, deviceSubject } from '../../pki/csr-builder.js';
import { pem } from '../../pki/der.js';
import { createFactoryPki } from '../../pki/factory-pki.js';
import type { NameAttribute } from '../../pki/name.js';
import { writeFactoryPki } from '../../server/pki-dir.js';

export const FACTORY = 'acme-factory';
export const GATEWAY_DNS = 'gw.acme.test';
export const OSTREE_DNS = 'ostree.acme.test';

export const tempDir = (prefix = 'kiln-test-'): string => mkdtempSync(join(tmpdir(), prefix));

export async function makePkiDir(factory = FACTORY): Promise<string> {
  const dir = join(tempDir(), 'pki');
  writeFactoryPki(dir, await createFactoryPki({ factory, owner: 'owner-1', dnsNames: [GATEWAY_DNS, OSTREE_DNS], now: new Date() }));
  return dir;
}

export const p256 = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

export interface DeviceCsrOptions {
  uuid?: string;
  factory?: string;
  production?: boolean;
  key?: KeyObject;
  subject?: NameAttribute[];
}

export async function deviceCsr(o: DeviceCsrOptions = {}): Promise<{ uuid: string; csrPem: string; key: KeyObject }> {
  const uuid = o.uuid ?? randomUUID();
  const key = o.key ?? p256();
  const der = await createCsr({
    subject: o.subject ?? deviceSubject(uuid, o.factory ?? FACTORY, o.production ?? false),
    key,
    extensions: DEVICE_CSR_EXTENSIONS(),
  });
  return { uuid, csrPem: pem('CERTIFICATE REQUEST', der), key };
}

/** A request body exactly as lmp-device-register writes it: every value a string, `/` escaped as `\/`. */
export function lmpBody(
  fields: { csr: string; uuid: string; hwid?: string; overrides?: Record<string, Record<string, string>> } & Record<string, unknown>,
): string {
  const { csr, uuid, hwid, overrides, ...rest } = fields;
  const body = {
    'hardware-id': hwid ?? 'intel-corei7-64',
    uuid,
    name: uuid,
    csr,
    'sota-config-dir': '/var/sota',
    'use-ostree-server': 'true',
    overrides: overrides ?? {
      pacman: {
        type: '"ostree+compose_apps"',
        compose_apps_root: '"/var/sota/compose-apps"',
        compose_apps: '"shellhttpd"',
        reset_apps_root: '"/var/sota/reset-apps"',
        reset_apps: '" "',
        tags: '"main"',
      },
    },
    ...rest,
  };
  return JSON.stringify(body).replace(/\//g, '\\/');
}
