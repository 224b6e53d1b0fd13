// Bundles the CLIs into dist/. kilnctl keeps its npm dependencies external;
// device-register is one self-contained file (it runs on small boards). Builds
// the server's native addons (native/: ECDSA, the SQLite WAL buffer) with npm's
// node-gyp into dist/.
//
// Running servers have dist/'s addons mapped: rewriting such a file in place kills
// them (SIGSEGV/SIGBUS, no log line). So every output is written to a new file and
// renamed over the old one, and left alone when its bytes have not changed.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Puts `bytes` at `path` by rename, never by rewriting a file another process may have mapped. */
function replaceFile(path, bytes) {
  if (existsSync(path) && readFileSync(path).equals(bytes)) return;
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes, { mode: 0o755 });
  renameSync(tmp, path);
}

const common = {
  write: false,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: false,
  logLevel: 'warning',
  absWorkingDir: root,
};

mkdirSync(join(root, 'dist'), { recursive: true });
const bundle = async (opts) => {
  for (const f of (await build({ ...common, ...opts })).outputFiles) replaceFile(f.path, Buffer.from(f.contents));
};
await bundle({ entryPoints: ['cli/kilnctl.ts'], outfile: 'dist/kilnctl.js', packages: 'external' });
await bundle({ entryPoints: ['server/db/sqlite/writer-worker.ts'], outfile: 'dist/sqlite-writer.js', packages: 'external' });
await bundle({ entryPoints: ['server/db/sqlite/checkpointer.ts'], outfile: 'dist/sqlite-checkpointer.js', packages: 'external' });
await bundle({ entryPoints: ['cli/device-register.ts'], outfile: 'dist/device-register.js', minify: true, external: ['pkcs11js'] });
await bundle({ entryPoints: ['scripts/bench.ts'], outfile: 'dist/bench.js', packages: 'external' });

// Node's own headers (they carry OpenSSL's) rather than a download: this
// machine and CI have no internet but the registries.
function nodeGypArgs() {
  const gyp =
    process.env.npm_config_node_gyp ??
    join(dirname(realpathSync(execFileSync('sh', ['-c', 'command -v npm']).toString().trim())), '../node_modules/node-gyp/bin/node-gyp.js');
  const prefix = dirname(dirname(process.execPath));
  const nodedir = process.env.npm_config_nodedir ?? (existsSync(join(prefix, 'include/node/node_api.h')) ? prefix : undefined);
  return [gyp, 'rebuild', '--release', '--loglevel=warn', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
}
const ADDONS = ['kiln_ecdsa', 'kiln_walbuf'];
const built = (name) => join(root, `native/build/Release/${name}.node`);
const sources = ['native/ecdsa.c', 'native/walbuf.c', 'native/binding.gyp'].map((f) => statSync(join(root, f)).mtimeMs);
try {
  if (ADDONS.some((a) => !existsSync(built(a)) || statSync(built(a)).mtimeMs < Math.max(...sources))) {
    execFileSync(process.execPath, nodeGypArgs(), { cwd: join(root, 'native'), stdio: ['ignore', 'ignore', 'inherit'] });
  }
  for (const a of ADDONS) replaceFile(join(root, `dist/${a}.node`), readFileSync(built(a)));
} catch (err) {
  // Not fatal: the server then verifies CSRs and signs through node:crypto (about
  // half the rate) and writes WAL frames one by one; its start-up line says which.
  // The test suite insists on the addons.
  for (const a of ADDONS) rmSync(join(root, `dist/${a}.node`), { force: true }); // unlinking is safe for a mapped file
  process.stderr.write(`build: native addons not built (${String(err.message ?? err).split('\n')[0]}); the server will use node:crypto\n`);
}

// The Yocto layers ship copies of the device-side files; keep them identical.
const sync = [
  ['dist/device-register.js', 'recipes/recipes-kiln/kiln-device-register/files/device-register.mjs'],
  ['scripts/device-auto-register', 'recipes/recipes-kiln/kiln-device-auto-register/files/device-auto-register'],
  ['scripts/systemd/device-auto-register.service', 'recipes/recipes-kiln/kiln-device-auto-register/files/device-auto-register.service'],
  ['scripts/device-auto-register', 'meta-overrides/recipes-sota/lmp-device-auto-register/files/device-auto-register'],
];
for (const [from, to] of sync) copyFileSync(join(root, from), join(root, to));
