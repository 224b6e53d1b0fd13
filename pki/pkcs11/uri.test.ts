import { describe, expect, it } from 'vitest';
import { parsePkcs11Uri, pinOf } from './uri.js';

describe('parsePkcs11Uri', () => {
  it('ok/token, object, id, module path and pin source', () => {
    const u = parsePkcs11Uri(
      'pkcs11:token=My%20Token;object=local-ca;id=%01%ff?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin',
    );
    expect(u).toEqual({
      token: 'My Token',
      object: 'local-ca',
      id: Buffer.from([1, 255]),
      modulePath: '/usr/lib/softhsm/libsofthsm2.so',
      pinSource: 'file:/run/pin',
    });
    expect(pinOf(u, (p) => (p === '/run/pin' ? '4321\n' : ''))).toBe('4321');
  });

  it.each([
    ['fail/not-pkcs11', 'file:/x', /must start with pkcs11:/],
    ['fail/no-module', 'pkcs11:token=a;object=b', /module-path is required/],
    ['fail/no-token', 'pkcs11:object=b?module-path=/m.so', /name the token/],
    ['fail/no-object', 'pkcs11:token=a?module-path=/m.so', /name the key/],
    ['fail/bad-attr', 'pkcs11:token=a;object=b;colour=red?module-path=/m.so', /unknown attribute "colour"/],
    ['fail/bad-percent', 'pkcs11:token=a%zz;object=b?module-path=/m.so', /percent-encoding/],
    ['fail/no-pin', 'pkcs11:token=a;object=b?module-path=/m.so', /no PIN: add \?pin-source=file:/],
  ])('%s', (_n, uri, msg) => {
    expect(() => parsePkcs11Uri(uri)).toThrow(msg);
  });
});
