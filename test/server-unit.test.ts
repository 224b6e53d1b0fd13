// What an operator installing a server gets: a hardened systemd unit and an example
// configuration with every key.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseServeConfig, SETTINGS } from '../server/config.js';
import { ROOT, run, systemdRoot } from './helpers/proc.js';

const UNIT = join(ROOT, 'scripts/systemd/kiln.service');
const EXAMPLE = join(ROOT, 'docs/kiln.example.json');

/** A root directory with the unit installed and kilnctl where the unit expects it. */
function installedRoot(): string {
  return systemdRoot({ 'opt/kiln/bin/kilnctl': join(ROOT, 'bin/kilnctl'), 'etc/systemd/system/kiln.service': UNIT });
}

describe('the server unit', () => {
  it('ok/systemd-analyze verify passes', () => {
    const r = run('systemd-analyze', ['verify', `--root=${installedRoot()}`, 'kiln.service']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('ok/systemd-analyze security rates it at most 2.0 (OK)', () => {
    const r = run('systemd-analyze', ['security', '--offline=yes', `--root=${installedRoot()}`, '--threshold=20', 'kiln.service']);
    expect(r.code).toBe(0);
    const level = Number(/Overall exposure level for kiln\.service: ([\d.]+)/.exec(r.stdout)?.[1]);
    expect(level).toBeLessThanOrEqual(2.0);
  });

  it('ok/runs as its own user, writes only its state directory, gains no privileges', () => {
    const unit = readFileSync(UNIT, 'utf8');
    for (const line of [
      'User=kiln',
      'ProtectSystem=strict',
      'StateDirectory=kiln',
      'NoNewPrivileges=yes',
      'RestartPreventExitStatus=64 78',
    ])
      expect(unit).toMatch(new RegExp(`^${line}$`, 'm'));
    expect(unit).toMatch(/^ExecStart=\/opt\/kiln\/bin\/kilnctl serve --config \/etc\/kiln\/kiln\.json$/m);
  });
});

describe('docs/kiln.example.json', () => {
  it('ok/has every setting, and serve accepts it as it is', () => {
    const example = JSON.parse(readFileSync(EXAMPLE, 'utf8')) as Record<string, unknown>;
    expect(Object.keys(example).sort()).toEqual(
      Object.values(SETTINGS)
        .map((s) => s.key)
        .sort(),
    );
    const c = parseServeConfig({ flags: {}, env: {}, configFile: EXAMPLE });
    expect(c.db).toEqual({ kind: 'sqlite', path: '/var/lib/kiln/kiln.db' });
    expect(c.upstream?.api).toBe('https://api.foundries.io/ota/devices/');
  });
});
