// The request-field policy (issue 14): bounded, plain values every real LmP device sends.
import { describe, expect, it } from 'vitest';
import { KilnError } from '../pki/errors.js';
import { parseSignRequest } from './sign-request.js';

const body = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ csr: 'x', 'hardware-id': 'intel-corei7-64', 'sota-config-dir': '/var/sota', 'use-ostree-server': 'false', ...extra });

const reasonOf = (text: string): string => {
  try {
    parseSignRequest(text);
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(KilnError);
    expect((err as KilnError).httpStatus).toBe(400);
    return (err as KilnError).message;
  }
};

const sections = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`s${i}`, { k: '"v"' }]));

describe('request fields', () => {
  it.each<[string, Record<string, unknown>]>([
    ['ok/yocto machine names', { 'hardware-id': 'imx8mm-lpddr4-evk' }],
    ['ok/machine with a plus and dots', { 'hardware-id': 'raspberrypi4-64+v1.2_x' }],
    [
      'ok/hsm and compose-apps overrides',
      {
        overrides: {
          pacman: { type: '"compose"', compose_apps: '"shellhttpd"', reset_apps: '" "', tags: '"main"' },
          tls: { pkey_source: '"pkcs11"', cert_source: '"pkcs11"' },
          storage: { tls_pkey_path: '', tls_clientcert_path: '' },
          import: { tls_pkey_path: '', tls_clientcert_path: '' },
        },
      },
    ],
    ['ok/a long unicode name', { name: 'Linie 3 – Prüfstand ' + 'x'.repeat(100) }],
    ['ok/nested sota dir', { 'sota-config-dir': '/var/lib/sota-2' }],
  ])('%s', (_n, extra) => {
    expect(reasonOf(body(extra))).toBe('ok');
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['fail/hardware-id-space', { 'hardware-id': 'intel corei7' }, /'hardware-id' must be 1-64 letters/],
    ['fail/hardware-id-too-long', { 'hardware-id': 'm'.repeat(65) }, /'hardware-id' must be 1-64/],
    ['fail/hardware-id-slash', { 'hardware-id': '../etc' }, /'hardware-id' must be/],
    ['fail/name-too-long', { name: 'n'.repeat(129) }, /'name' is longer than 128/],
    ['fail/sota-dir-dotdot', { 'sota-config-dir': '/var/../etc' }, /'sota-config-dir' must be an absolute path of/],
    ['fail/sota-dir-double-slash', { 'sota-config-dir': '/var//sota' }, /'sota-config-dir'/],
    ['fail/sota-dir-space', { 'sota-config-dir': '/var/so ta' }, /'sota-config-dir'/],
    ['fail/sota-dir-too-long', { 'sota-config-dir': '/' + 'a'.repeat(300) }, /at most 255/],
    ['fail/use-ostree-server', { 'use-ostree-server': 'maybe' }, /'use-ostree-server' must be "true" or "false"/],
    [
      'fail/override-proto-section',
      { overrides: JSON.parse('{"__proto__": {"k": "v"}}') },
      /override section '__proto__' is not a valid name/,
    ],
    [
      'fail/override-constructor-key',
      { overrides: { pacman: { constructor: '"x"' } } },
      /override key 'pacman.constructor' is not a valid name/,
    ],
    ['fail/override-tostring-section', { overrides: { toString: { k: '"x"' } } }, /override section 'toString'/],
    ['fail/too-many-sections', { overrides: sections(17) }, /more than 16 sections/],
    [
      'fail/too-many-keys',
      { overrides: { pacman: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, '"v"'])) } },
      /more than 32 keys/,
    ],
    ['fail/override-value-too-long', { overrides: { pacman: { tags: '"' + 'x'.repeat(1100) + '"' } } }, /longer than 1024/],
    ['fail/override-key-too-long', { overrides: { pacman: { ['k'.repeat(65)]: '"v"' } } }, /is not a valid name/],
  ])('%s', (_n, extra, reason) => {
    expect(reasonOf(body(extra))).toMatch(reason);
  });
});
