// The CRL read back by a well-kept X.509 library: version, number, issuer, entries,
// reasons and dates are what was asked for (OpenSSL checks the signature in test/revocation.test.ts).
import { X509Crl } from '@peculiar/x509';
import { describe, expect, it } from 'vitest';
import { createCa } from './ca.js';
import { createCrl } from './crl.js';
import { createFactoryPki } from './factory-pki.js';
import { createKeySigner } from './signer.js';
import { createPrivateKey } from 'node:crypto';

describe('createCrl', () => {
  it('ok/entries, reasons, number and times read back with @peculiar/x509', async () => {
    const files = await createFactoryPki({ factory: 'acme', owner: 'o', dnsNames: ['gw'], now: new Date() });
    const get = (n: string): string => files.find((f) => f.name === n)!.content;
    const ca = createCa(
      Buffer.from(get('local-ca.pem').replace(/-----[^-]+-----|\s/g, ''), 'base64'),
      createKeySigner(createPrivateKey(get('local-ca.key'))),
    );
    const at = new Date('2026-11-29T10:00:00Z');
    const der = await createCrl(ca, {
      number: 42,
      thisUpdate: at,
      nextUpdate: new Date('2026-11-30T10:00:00Z'),
      entries: [
        { serial: 'f1a2', revokedAt: at, reason: 'keyCompromise' }, // top bit set: a leading zero byte
        { serial: '0a1b', revokedAt: at, reason: 'unspecified' }, // no reason extension
        { serial: '7f', revokedAt: new Date('2051-01-01T00:00:00Z'), reason: 'cessationOfOperation' }, // GeneralizedTime
      ],
    });
    const crl = new X509Crl(new Uint8Array(der));
    expect(crl.version).toBe(1);
    expect(crl.thisUpdate.toISOString()).toBe('2026-11-29T10:00:00.000Z');
    expect(crl.nextUpdate?.toISOString()).toBe('2026-11-30T10:00:00.000Z');
    expect(crl.entries.map((e) => e.serialNumber.toLowerCase())).toEqual(['00f1a2', '0a1b', '7f']);
    expect(crl.entries.map((e) => e.reason)).toEqual([1, undefined, 5]);
    expect(crl.entries[2].revocationDate.toISOString()).toBe('2051-01-01T00:00:00.000Z');
    expect(crl.getExtension('2.5.29.20')).toBeTruthy();
    expect(crl.issuer).toContain('OU=acme');
  });

  it('ok/no entries: no revokedCertificates field at all', async () => {
    const files = await createFactoryPki({ factory: 'acme', owner: 'o', dnsNames: ['gw'], now: new Date() });
    const get = (n: string): string => files.find((f) => f.name === n)!.content;
    const ca = createCa(
      Buffer.from(get('local-ca.pem').replace(/-----[^-]+-----|\s/g, ''), 'base64'),
      createKeySigner(createPrivateKey(get('local-ca.key'))),
    );
    const der = await createCrl(ca, { number: 1, thisUpdate: new Date(), nextUpdate: new Date(Date.now() + 1000), entries: [] });
    const crl = new X509Crl(new Uint8Array(der));
    expect(crl.entries).toEqual([]);
  });
});
