import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { makePkiDir } from '../test/helpers/pki.js';
import { pemCertificates } from './certificate.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { certsOnlyPkcs7 } from './pkcs7-build.js';
import { readCertsOnlyPkcs7 } from './pkcs7.js';

describe('certs-only PKCS#7', () => {
  it('ok/openssl reads what pkijs builds, in order; the DER reader reads it back', async () => {
    const dir = await makePkiDir();
    const certs = [
      ...pemCertificates(readFileSync(join(dir, 'local-ca.pem'), 'utf8')),
      ...pemCertificates(readFileSync(join(dir, 'factory_ca.pem'), 'utf8')),
    ];
    const p7 = certsOnlyPkcs7(certs);
    const text = execFileSync('openssl', ['pkcs7', '-inform', 'DER', '-print_certs'], { input: p7 }).toString();
    expect(pemCertificates(text)).toEqual(certs);
    expect(readCertsOnlyPkcs7(p7)).toEqual(certs);
  });

  it('ok/an empty list; fail/not SignedData', () => {
    expect(readCertsOnlyPkcs7(certsOnlyPkcs7([]))).toEqual([]);
    expect(() => readCertsOnlyPkcs7(Buffer.from('3003060100', 'hex'))).toThrow();
  });
});
