// A registration that awaits an operator's approval (a manual lot answers 202) must be
// retried as the same request: the same UUID and the same key, or the operator approves a
// device that never comes back. The identity is kept in <sota-dir>/.kiln-pending (0700,
// the key 0600) until the registration succeeds.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileError } from '../../pki/errors.js';
import { isCanonicalUuid } from '../../pki/policy.js';

const DIR = '.kiln-pending';

export interface PendingIdentity {
  uuid: string;
  key: KeyObject;
}

export function readPending(sotaDir: string): PendingIdentity | undefined {
  const dir = join(sotaDir, DIR);
  if (!existsSync(dir)) return undefined;
  try {
    const uuid = readFileSync(join(dir, 'uuid'), 'utf8').trim();
    if (!isCanonicalUuid(uuid)) return undefined;
    return { uuid, key: createPrivateKey(readFileSync(join(dir, 'pkey.pem'))) };
  } catch {
    return undefined; // unreadable or half-written: register afresh
  }
}

export function savePending(sotaDir: string, p: PendingIdentity): void {
  const dir = join(sotaDir, DIR);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const put = (name: string, content: string): void => {
      const tmp = join(dir, `.${name}.tmp`);
      writeFileSync(tmp, content, { mode: 0o600 });
      renameSync(tmp, join(dir, name));
    };
    put('pkey.pem', p.key.export({ type: 'sec1', format: 'pem' }).toString());
    put('uuid', p.uuid + '\n');
  } catch (err) {
    throw fileError('create', dir, err);
  }
}

export function clearPending(sotaDir: string): void {
  rmSync(join(sotaDir, DIR), { recursive: true, force: true });
}
