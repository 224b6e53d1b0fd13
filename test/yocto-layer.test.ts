// The Yocto layer and the overrides: files, variables, modes, and copies in sync.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, run } from './helpers/proc.js';

const LAYER = join(ROOT, 'recipes');
const OVERRIDES = join(ROOT, 'meta-overrides');

function walk(dir: string, ext: RegExp): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p, ext) : ext.test(f) ? [p] : [];
  });
}

const recipes = [...walk(LAYER, /\.(bb|bbappend)$/), ...walk(OVERRIDES, /\.(bb|bbappend)$/)];
const fileUris = (text: string): string[] =>
  [...text.matchAll(/file:\/\/([^\s";]+)/g)].map((m) => m[1]).filter((f) => !f.startsWith('${COMMON_LICENSE_DIR}'));

describe('meta-kiln layer', () => {
  it('layer.conf names its collection, priority, dependencies and LTS series', () => {
    const conf = readFileSync(join(LAYER, 'conf/layer.conf'), 'utf8');
    expect(conf).toMatch(/^BBFILE_COLLECTIONS \+= "kiln"$/m);
    expect(conf).toMatch(/^BBFILE_PRIORITY_kiln = "\d+"$/m);
    expect(conf).toMatch(/^LAYERDEPENDS_kiln = "core openembedded-layer"$/m);
    expect(conf).toMatch(/^LAYERSERIES_COMPAT_kiln = ".*\bscarthgap\b.*"$/m);
  });

  it('every file a recipe or bbappend fetches exists next to it', () => {
    expect(recipes.length).toBeGreaterThanOrEqual(4);
    for (const r of recipes) {
      for (const f of fileUris(readFileSync(r, 'utf8'))) {
        expect(statSync(join(dirname(r), 'files', f)).isFile(), `${r}: ${f}`).toBe(true);
      }
    }
  });

  it('every variable the layer README documents is used by a recipe', () => {
    const readme = readFileSync(join(LAYER, 'README.md'), 'utf8');
    const documented = [...new Set([...readme.matchAll(/`(KILN_[A-Z_]+)`/g)].map((m) => m[1]))];
    expect(documented.length).toBeGreaterThanOrEqual(10);
    const used = recipes.map((r) => readFileSync(r, 'utf8')).join('\n');
    for (const v of documented) expect(used, v).toMatch(new RegExp(`\\$\\{${v}\\}`));
  });

  it('installs the token 0600 and the unit with systemd', () => {
    const bb = readFileSync(join(LAYER, 'recipes-kiln/kiln-device-auto-register/kiln-device-auto-register_0.1.0.bb'), 'utf8');
    expect(bb).toMatch(/install -m 0600 \$\{UNPACKDIR\}\/lmp-device-register-token \$\{D\}\$\{sysconfdir\}\/lmp-device-register-token/);
    expect(bb).toMatch(/^inherit allarch systemd$/m);
    expect(bb).toMatch(/^SYSTEMD_SERVICE:\$\{PN\} = "device-auto-register.service"$/m);
    expect(readFileSync(join(LAYER, 'recipes-kiln/kiln-device-register/kiln-device-register_0.1.0.bb'), 'utf8')).toMatch(
      /^RDEPENDS:\$\{PN\} = "nodejs"$/m,
    );
  });

  it('the overrides make devices production and point DEVICE_API at Kiln', () => {
    const bbappend = readFileSync(join(OVERRIDES, 'recipes-sota/lmp-device-register/lmp-device-register_%.bbappend'), 'utf8');
    expect(bbappend).toMatch(/^PACKAGECONFIG \+= "production"$/m);
    expect(bbappend).toMatch(/-DDEVICE_API=\$\{KILN_DEVICE_API\}/);
  });

  it('the layer copies are identical to their sources', () => {
    const same = (a: string, b: string): void =>
      expect(readFileSync(join(ROOT, a)).equals(readFileSync(join(ROOT, b))), `${a} vs ${b}`).toBe(true);
    same('dist/device-register.js', 'recipes/recipes-kiln/kiln-device-register/files/device-register.js');
    same('scripts/device-auto-register', 'recipes/recipes-kiln/kiln-device-auto-register/files/device-auto-register');
    same(
      'scripts/systemd/device-auto-register.service',
      'recipes/recipes-kiln/kiln-device-auto-register/files/device-auto-register.service',
    );
    same('scripts/device-auto-register', 'meta-overrides/recipes-sota/lmp-device-auto-register/files/device-auto-register');
  });

  it('shellcheck -s sh passes on every shell script the layers ship', () => {
    const scripts = [...walk(LAYER, /^(device-auto-register|device-register\.sh)$/), ...walk(OVERRIDES, /^device-auto-register$/)];
    expect(scripts.length).toBe(3);
    const r = run('shellcheck', ['-s', 'sh', ...scripts]);
    expect(r.stdout + r.stderr).toBe('');
  });
});
