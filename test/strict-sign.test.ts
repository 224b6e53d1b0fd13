// Issue 14's named refusals through POST /sign on the default (native) path: each is a
// 400 with a one-line plain-text reason, and nothing is recorded.
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { nullValue, oid, seq, set, TAG, utf8 } from '../pki/der.js';
import { OID } from '../pki/oids.js';
import { makeTestApp, type TestApp } from './helpers/app.js';
import { forgeCsrDer, forgeCsrPem, nonMinimalLength, rawAtv } from './helpers/csr-forge.js';
import { FACTORY, lmpBody, makePkiDir } from './helpers/pki.js';
import { pem, unpemStrict } from '../pki/der.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kilnctl } from './helpers/proc.js';

const cn = (v: string) => ({ oid: OID.commonName, value: v });
const ou = (v: string) => ({ oid: OID.organizationalUnit, value: v });

describe('POST /sign refuses what does not read one way', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeTestApp();
  });

  it.each<[string, (uuid: string) => Promise<string>, RegExp]>([
    ['fail/duplicate-cn', (u) => forgeCsrPem(u, FACTORY, { subject: [cn(u), ou(FACTORY), cn(randomUUID())] }), /^csr subject has 2 CNs/],
    ['fail/duplicate-ou', (u) => forgeCsrPem(u, FACTORY, { subject: [cn(u), ou(FACTORY), ou('evil')] }), /^csr subject has 2 OUs/],
    ['fail/empty-signature', (u) => forgeCsrPem(u, FACTORY, { signature: () => Buffer.alloc(0) }), /^csr signature is empty$/],
    ['fail/161-byte-signature', (u) => forgeCsrPem(u, FACTORY, { signature: () => Buffer.alloc(161, 1) }), /^csr signature is 161 bytes/],
    [
      'fail/unterminated-oid',
      (u) =>
        forgeCsrPem(u, FACTORY, {
          subject: seq(
            set(seq(oid(OID.commonName), utf8(u))),
            set(seq(oid(OID.organizationalUnit), utf8(FACTORY))),
            set(rawAtv(Buffer.from([0x55, 0x04, 0x8f]), TAG.UTF8_STRING, Buffer.from('x'))),
          ),
        }),
      /^csr is not DER PKCS#10: OID ends inside an arc$/,
    ],
    [
      'fail/non-minimal-length',
      async (u) => pem('CERTIFICATE REQUEST', nonMinimalLength(await forgeCsrDer(u, FACTORY))),
      /^csr is not DER PKCS#10: non-minimal DER length$/,
    ],
    [
      'fail/wrong-algorithm',
      (u) => forgeCsrPem(u, FACTORY, { algorithm: seq(oid(OID.sha256WithRsa), nullValue()) }),
      /^csr signature algorithm 1\.2\.840\.113549\.1\.1\.11 does not match its EC key$/,
    ],
  ])('%s: 400, one line, nothing recorded', async (_n, make, reason) => {
    const uuid = randomUUID();
    const res = await t.request(lmpBody({ csr: await make(uuid), uuid }));
    const text = await res.text();
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(text.trim()).toMatch(reason);
    expect(text.trim().split('\n')).toHaveLength(1);
    expect(await t.store.getDevice(uuid)).toBeUndefined();
  });
});

describe('certificates read from a PKI directory are strict DER too', () => {
  it('fail/a local-ca.pem with a non-minimal length stops pki show (78) with the reason', async () => {
    const dir = await makePkiDir();
    const der = unpemStrict(readFileSync(join(dir, 'local-ca.pem'), 'utf8'), 'CERTIFICATE');
    writeFileSync(join(dir, 'local-ca.pem'), pem('CERTIFICATE', nonMinimalLength(der)));
    const r = kilnctl(['pki', 'show', '--dir', dir]);
    expect(r.code).toBe(78);
    expect(r.stderr).toBe(`kilnctl: ${join(dir, 'local-ca.pem')} is not a readable X.509 certificate: non-minimal DER length\n`);
  });
});
