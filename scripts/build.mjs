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
