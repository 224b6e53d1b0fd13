// Bundles the CLIs into dist/. kilnctl keeps its npm dependencies external;
// device-register is one self-contained file (it runs on small boards).
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: false,
  logLevel: 'warning',
  absWorkingDir: root,
};

await build({ ...common, entryPoints: ['cli/kilnctl.ts'], outfile: 'dist/kilnctl.js', packages: 'external' });
await build({ ...common, entryPoints: ['server/db/sqlite/writer-worker.ts'], outfile: 'dist/sqlite-writer.js', packages: 'external' });
await build({ ...common, entryPoints: ['cli/device-register.ts'], outfile: 'dist/device-register.js', minify: true, external: ['pkcs11js'] });
await build({ ...common, entryPoints: ['scripts/bench.ts'], outfile: 'dist/bench.js', packages: 'external' });

// The Yocto layers ship copies of the device-side files; keep them identical.
const { copyFileSync } = await import('node:fs');
const sync = [
  ['dist/device-register.js', 'recipes/recipes-kiln/kiln-device-register/files/device-register.js'],
  ['scripts/device-auto-register', 'recipes/recipes-kiln/kiln-device-auto-register/files/device-auto-register'],
  ['scripts/systemd/device-auto-register.service', 'recipes/recipes-kiln/kiln-device-auto-register/files/device-auto-register.service'],
  ['scripts/device-auto-register', 'meta-overrides/recipes-sota/lmp-device-auto-register/files/device-auto-register'],
];
for (const [from, to] of sync) copyFileSync(join(root, from), join(root, to));
