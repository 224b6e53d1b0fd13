import { describe, expect, it } from 'vitest';
import { KilnError } from '../../pki/errors.js';
import { parseArgs, parseOsRelease, resolveOptions } from './options.js';

const osr = parseOsRelease('NAME="Linux-microPlatform"\nLMP_FACTORY="acme"\nLMP_FACTORY_TAG=main\nLMP_MACHINE=intel-corei7-64\n');
const exitOf = (fn: () => unknown): number | undefined => {
  try {
    fn();
  } catch (e) {
    return (e as KilnError).exitCode;
  }
};

describe('parseArgs', () => {
  it.each([
    [['--production'], { production: true }],
    [['-p'], { production: true }],
    [['--production', '1'], { production: true }],
    [['--production', '0'], { production: false }],
    [['--production=0'], { production: false }],
    [['--start-daemon', '0', '--force', '1'], { startDaemon: false, force: true }],
    [['-p', '-d', '/data/sota'], { production: true, sotaDir: '/data/sota' }],
    [
      ['-T', 'tok', '-H', 'X-Token', '-u', 'u', '-n', 'n', '-a', 'a,b', '-A', 'c', '-g', 'grp', '-t', 'beta', '-i', 'hw', '-f', 'fac'],
      {
        apiToken: 'tok',
        apiTokenHeader: 'X-Token',
        uuid: 'u',
        name: 'n',
        apps: 'a,b',
        restorableApps: 'c',
        group: 'grp',
        tags: 'beta',
        hwid: 'hw',
        factory: 'fac',
      },
    ],
    [['--use-ostree-server', '--validate-uuid', '1'], { useOstreeServer: true, validateUuid: true }],
  ])('ok %j', (argv, expected) => {
    expect(parseArgs(argv)).toEqual(expected);
  });

  it.each([[['--bogus']], [['-x']], [['positional']], [['-d']], [['--force=maybe']]])('fail/usage %j exits 64', (argv) => {
    expect(exitOf(() => parseArgs(argv))).toBe(64);
  });
});

describe('resolveOptions', () => {
  it('ok/os-release supplies factory, tag and hardware id; defaults match lmp-device-register', () => {
    const o = resolveOptions({}, { DEVICE_API: 'http://kiln:8000/sign' }, osr);
    expect(o).toMatchObject({
      factory: 'acme',
      tags: 'main',
      hwid: 'intel-corei7-64',
      production: false,
      startDaemon: true,
      sotaDir: '/var/sota',
      apiTokenHeader: 'OSF-TOKEN',
      force: false,
      deviceApi: 'http://kiln:8000/sign',
    });
    expect(o.name).toBe(o.uuid);
    expect(o.uuid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('ok/options beat environment beat os-release', () => {
    expect(resolveOptions({}, { DEVICE_FACTORY: 'env-f' }, osr).factory).toBe('env-f');
    expect(resolveOptions({ factory: 'opt-f' }, { DEVICE_FACTORY: 'env-f' }, osr).factory).toBe('opt-f');
    expect(resolveOptions({ tags: 'devel' }, {}, osr).tags).toBe('devel');
  });

  it('ok/PRODUCTION with any value turns production on; --production 0 turns it off', () => {
    expect(resolveOptions({}, { PRODUCTION: '' }, osr).production).toBe(true);
    expect(resolveOptions({}, { PRODUCTION: '0' }, osr).production).toBe(true);
    expect(resolveOptions({ production: false }, { PRODUCTION: '1' }, osr).production).toBe(false);
  });

  it.each([
    ['no factory', {}, {}, {}],
    ['no hwid', { factory: 'f' }, {}, {}],
    ['bad uuid with -v', { validateUuid: true, uuid: 'nope' }, {}, osr],
    ['relative sota dir', { sotaDir: 'var/sota' }, {}, osr],
    ['bad DEVICE_API', {}, { DEVICE_API: 'ftp://x' }, osr],
  ])('fail/%s exits 64', (_n, raw, env, os) => {
    expect(exitOf(() => resolveOptions(raw, env, os))).toBe(64);
  });
});
