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
      gateway: undefined,
      ostree: undefined,
      validityDays: 7300,
      serialFromUuid: false,
      rejectReregistration: false,
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

  it('fail/unknown key in the config file', () => {
    const file = join(tempDir(), 'kiln.json');
    writeFileSync(file, JSON.stringify({ lisen: 'x' }));
    expect(() => parseServeConfig({ flags: {}, env: {}, configFile: file })).toThrow(/unknown setting "lisen"/);
  });
});
