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
    // only the series a real BitBake parsed it on (docs/yocto.md)
    expect(conf).toMatch(/^LAYERSERIES_COMPAT_kiln = "scarthgap"$/m);
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
    expect(bb).toMatch(/install -m 0600 \$\{WORKDIR\}\/lmp-device-register-token \$\{D\}\$\{sysconfdir\}\/lmp-device-register-token/);
    expect(bb).toMatch(/^inherit allarch systemd$/m);
    expect(bb).toMatch(/^SYSTEMD_SERVICE:\$\{PN\} = "device-auto-register.service"$/m);
    expect(readFileSync(join(LAYER, 'recipes-kiln/kiln-device-register/kiln-device-register_0.1.0.bb'), 'utf8')).toMatch(
      /^RDEPENDS:\$\{PN\} = "nodejs"$/m,
    );
  });

  it("the overrides make devices production and set the recipe's own LMP_DEVICE_API", () => {
    const bbappend = readFileSync(join(OVERRIDES, 'recipes-sota/lmp-device-register/lmp-device-register_%.bbappend'), 'utf8');
    expect(bbappend).toMatch(/^PACKAGECONFIG \+= "production"$/m);
    expect(bbappend).toMatch(/^LMP_DEVICE_API = "\$\{KILN_DEVICE_API\}"$/m);
    expect(bbappend).not.toMatch(/EXTRA_OECMAKE/);
  });

  it("the bbappends are named for meta-lmp's recipes (lmp-device-auto-register.bb has no version; lmp-device-register_git.bb)", () => {
    const names = walk(OVERRIDES, /\.bbappend$/).map((p) => p.split('/').pop());
    expect(names.sort()).toEqual(['lmp-device-auto-register.bbappend', 'lmp-device-register_%.bbappend']);
  });

  it('no anonymous python (it ran on every parse of every build), no UNPACKDIR default, no S = WORKDIR outside scarthgap', () => {
    for (const r of recipes) {
      const text = readFileSync(r, 'utf8');
      expect(text, r).not.toMatch(/^python\s*(__anonymous\s*)?\(\)/m);
      expect(text, r).not.toMatch(/UNPACKDIR\s*\?\?=/);
    }
    const bb = readFileSync(join(LAYER, 'recipes-kiln/kiln-device-auto-register/kiln-device-auto-register_0.1.0.bb'), 'utf8');
    expect(bb).toMatch(/^do_install\[prefuncs\] \+= "kiln_check_device_api"$/m);
  });

  it("kiln-device-auto-register and meta-lmp's lmp-device-auto-register conflict", () => {
    const bb = readFileSync(join(LAYER, 'recipes-kiln/kiln-device-auto-register/kiln-device-auto-register_0.1.0.bb'), 'utf8');
    expect(bb).toMatch(/^RCONFLICTS:\$\{PN\} = "lmp-device-auto-register"$/m);
  });

  it('no HSM PIN in any recipe variable: each device makes its own, or a station provides it', () => {
    for (const r of recipes) expect(readFileSync(r, 'utf8'), r).not.toMatch(/KILN_HSM_(SO)?PIN|HSM_(SO)?PIN\s*\?*=/);
  });

  it('the stock C++ client is the default; the Node.js client is an ES module by name (.mjs)', () => {
    const bb = readFileSync(join(LAYER, 'recipes-kiln/kiln-device-auto-register/kiln-device-auto-register_0.1.0.bb'), 'utf8');
    expect(bb).toMatch(/^KILN_CLIENT \?\?= "lmp-device-register"$/m);
    expect(bb).toMatch(/^KILN_CLIENT_FLAVOR \?\?= "lmp"$/m);
    const node = readFileSync(join(LAYER, 'recipes-kiln/kiln-device-register/kiln-device-register_0.1.0.bb'), 'utf8');
    expect(node).toMatch(/\$\{D\}\$\{libdir\}\/kiln\/device-register\.mjs/);
    expect(readFileSync(join(LAYER, 'recipes-kiln/kiln-device-register/files/device-register.sh'), 'utf8')).toContain(
      '/usr/lib/kiln/device-register.mjs',
    );
  });

  it('the layer copies are identical to their sources', () => {
    const same = (a: string, b: string): void =>
      expect(readFileSync(join(ROOT, a)).equals(readFileSync(join(ROOT, b))), `${a} vs ${b}`).toBe(true);
    same('dist/device-register.js', 'recipes/recipes-kiln/kiln-device-register/files/device-register.mjs');
    same('scripts/device-auto-register', 'recipes/recipes-kiln/kiln-device-auto-register/files/device-auto-register');
    same(
      'scripts/systemd/device-auto-register.service',
      'recipes/recipes-kiln/kiln-device-auto-register/files/device-auto-register.service',
    );
    same('scripts/device-auto-register', 'meta-overrides/recipes-sota/lmp-device-auto-register/files/device-auto-register');
    for (const f of ['kiln-renew', 'systemd/kiln-renew.service', 'systemd/kiln-renew.timer'])
      same(`scripts/${f}`, `recipes/recipes-kiln/kiln-renew/files/${f.replace('systemd/', '')}`);
  });

  it('shellcheck -s sh passes on every shell script the layers ship', () => {
    const scripts = [
      ...walk(LAYER, /^(device-auto-register|device-register\.sh|kiln-renew)$/),
      ...walk(OVERRIDES, /^device-auto-register$/),
    ];
    expect(scripts.length).toBe(4);
    const r = run('shellcheck', ['-s', 'sh', ...scripts]);
    expect(r.stdout + r.stderr).toBe('');
  });
});
