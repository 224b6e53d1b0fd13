import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../test/helpers/pki.js';
import { parseServeConfig } from './config.js';

describe('parseServeConfig', () => {
  it('ok/defaults', () => {
    const c = parseServeConfig({ flags: {}, env: {} });
    expect(c).toEqual({
      pkiDir: './data/pki',
      caKey: 'data/pki/local-ca.key',
      db: { kind: 'sqlite', path: './data/kiln.db' },
      listen: { host: '127.0.0.1', port: 8000 },
      adminListen: { host: '127.0.0.1', port: 8001 },
      gateway: undefined,
      ostree: undefined,
      validityDays: 7300,
      serialFromUuid: false,
      rejectReregistration: false,
      logLevel: 'info',
      tls: undefined,
      crl: { file: undefined, periodHours: 24, url: undefined },
      rekey: 'deny',
      enrollment: 'open',
      authHeader: 'OSF-TOKEN',
      upstream: undefined,
      estBootstrapCa: undefined,
      metrics: true,
      maxInFlight: 1024,
      rateLimit: 0,
      minFreeMb: 64,
      caExpiryMarginDays: 30,
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('ok/flags beat environment beat file beat defaults', () => {
    const file = join(tempDir(), 'kiln.json');
    writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:1', validityDays: 10, gateway: 'https://file.test', db: 'sqlite:/file.db' }));
    const c = parseServeConfig({
      flags: { listen: '127.0.0.1:3' },
      env: { KILN_LISTEN: '127.0.0.1:2', KILN_VALIDITY_DAYS: '20', KILN_REJECT_REREGISTRATION: 'true' },
      configFile: file,
    });
    expect(c.listen.port).toBe(3);
    expect(c.validityDays).toBe(20);
    expect(c.gateway).toBe('https://file.test');
    expect(c.db).toEqual({ kind: 'sqlite', path: '/file.db' });
    expect(c.rejectReregistration).toBe(true);
  });

  it.each([
    ['fail/listen', { listen: 'localhost' }, /--listen localhost: expected HOST:PORT/],
    ['fail/db', { db: 'mysql://x' }, /expected sqlite:PATH/],
    ['fail/gateway', { gateway: 'ftp://x' }, /expected an http\(s\) URL/],
    ['fail/gateway-quote', { gateway: 'https://x/"' }, /must not contain quotes/],
    ['fail/validity', { validityDays: '0' }, /between 1 and 36500/],
    ['fail/bool', { serialFromUuid: 'maybe' }, /expected true or false/],
  ])('%s', (_n, flags, msg) => {
    expect(() => parseServeConfig({ flags, env: {} })).toThrow(msg);
  });

  it.each([
    ['flag', { flags: { listen: 'nohost' }, env: {} }, /^--listen nohost: expected HOST:PORT$/],
    ['environment', { flags: {}, env: { KILN_LISTEN: 'nohost' } }, /^KILN_LISTEN=nohost: expected HOST:PORT$/],
    ['file', { flags: {}, env: {}, file: { listen: 'nohost' } }, /^"listen": "nohost" in .*kiln\.json: expected HOST:PORT$/],
    [
      'a password in a bad URL is hidden',
      { flags: {}, env: { KILN_DB: 'mysql://kiln:hunter2@db/x' } },
      /^KILN_DB=mysql:\/\/kiln:\*\*\*@db\/x: expected /,
    ],
    [
      'environment db',
      { flags: {}, env: { KILN_DB: 'mysql://x' } },
      /^KILN_DB=mysql:\/\/x: expected sqlite:PATH or postgres:\/\/USER@HOST\/DATABASE$/,
    ],
    ['file days', { flags: {}, env: {}, file: { validityDays: 0 } }, /^"validityDays": 0 in .*: expected a whole number/],
    ['env bool', { flags: {}, env: { KILN_SERIAL_FROM_UUID: 'maybe' } }, /^KILN_SERIAL_FROM_UUID=maybe: expected true or false$/],
    ['env mode', { flags: {}, env: { KILN_UPSTREAM_MODE: 'later' } }, /^KILN_UPSTREAM_MODE=later: expected sync or outbox$/],
    ['env log level', { flags: {}, env: { KILN_LOG_LEVEL: 'loud' } }, /^KILN_LOG_LEVEL=loud: expected error, warn, info$/],
  ])('fail/a bad value is blamed on where it was written: %s', (_n, src, msg) => {
    const file = join(tempDir(), 'kiln.json');
    const { file: content, ...rest } = src as { flags: Record<string, string>; env: Record<string, string>; file?: object };
    if (content) writeFileSync(file, JSON.stringify(content));
    expect(() => parseServeConfig({ ...rest, configFile: content ? file : undefined })).toThrow(msg);
  });

  it("fail/invalid JSON is reported as such, with the parser's position", () => {
    const file = join(tempDir(), 'kiln.json');
    writeFileSync(file, '{"listen": "127.0.0.1:1"');
    expect(() => parseServeConfig({ flags: {}, env: {}, configFile: file })).toThrow(
      /^config file .*kiln\.json is not valid JSON: .*position \d+/,
    );
    writeFileSync(file, '["listen"]');
    expect(() => parseServeConfig({ flags: {}, env: {}, configFile: file })).toThrow(/must hold a JSON object/);
  });

  it('ok/KILN_CONFIG names the file when --config does not', () => {
    const file = join(tempDir(), 'kiln.json');
    writeFileSync(file, JSON.stringify({ db: 'sqlite:/srv/kiln.db' }));
    expect(parseServeConfig({ flags: {}, env: { KILN_CONFIG: file } }).db).toEqual({ kind: 'sqlite', path: '/srv/kiln.db' });
  });

  it('ok/the upstream API keeps its trailing slash; the gateway loses it', () => {
    const c = parseServeConfig({
      flags: { upstreamApi: 'https://api.example/ota/devices/', upstreamTokenFile: '/t', gateway: 'https://gw.example:8443/' },
      env: {},
    });
    expect(c.upstream?.api).toBe('https://api.example/ota/devices/');
    expect(c.gateway).toBe('https://gw.example:8443');
  });

  it('fail/unknown key in the config file', () => {
    const file = join(tempDir(), 'kiln.json');
    writeFileSync(file, JSON.stringify({ lisen: 'x' }));
    expect(() => parseServeConfig({ flags: {}, env: {}, configFile: file })).toThrow(/unknown setting "lisen"/);
  });
});
