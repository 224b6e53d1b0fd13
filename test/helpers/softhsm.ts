// SoftHSM2 as a real PKCS#11 module: each call makes its own token directory.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './pki.js';
import { ROOT, run, type Run } from './proc.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsm {
  dir: string;
  env: { SOFTHSM2_CONF: string };
  /** Initializes a token in the next free slot. */
  initToken(label: string, pin: string, soPin: string): void;
  /** A PIN file (mode 0600) for URIs' pin-source. */
  pinFile(pin: string): string;
  /** Objects of a token with their attributes, read through pkcs11js in a child process. */
  inspect(token: string, pin: string): P11Object[];
}

export interface P11Object {
  class: 'private' | 'public' | 'certificate' | 'other';
  label: string;
  id: string;
  sensitive?: boolean;
  extractable?: boolean;
  value?: string;
}

export function makeSoftHsm(): SoftHsm {
  const dir = tempDir('kiln-softhsm-');
  mkdirSync(join(dir, 'tokens'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const env = { SOFTHSM2_CONF: conf };
  const must = (r: Run): Run => {
    if (r.code !== 0) throw new Error(`${r.stdout}${r.stderr}`);
    return r;
  };
  let pins = 0;
  return {
    dir,
    env,
    initToken: (label, pin, soPin) =>
      void must(run('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin], { env })),
    pinFile: (pin) => {
      const path = join(dir, `pin-${++pins}`);
      writeFileSync(path, pin + '\n', { mode: 0o600 });
      return path;
    },
    inspect: (token, pin) =>
      JSON.parse(
        must(run(process.execPath, [join(ROOT, 'test/helpers/p11-inspect.mjs'), SOFTHSM_MODULE, token, pin], { env })).stdout,
      ) as P11Object[],
  };
}

export const uriFor = (token: string, object: string, pinFile: string): string =>
  `pkcs11:token=${token};object=${object}?module-path=${SOFTHSM_MODULE}&pin-source=file:${pinFile}`;
