// Post-registration hooks: the executables of a directory, run in name order after a
// registration or renewal with the device's identity in their environment. A failing
// hook is reported; it does not undo what was registered.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const HOOKS_DIR = '/etc/kiln/post-register.d';

export interface HookEvent {
  event: 'register' | 'renew';
  uuid: string;
  sotaDir: string;
  serial: string;
}

const executable = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
};

/** Runs each executable of `dir` (sorted by name; dot files skipped); returns how many failed. */
export function runHooks(dir: string, e: HookEvent, log: (line: string) => void, timeoutMs = 60_000): number {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return 0; // no hooks directory: nothing to run
  }
  let failed = 0;
  for (const name of names) {
    const path = join(dir, name);
    if (name.startsWith('.') || !executable(path)) continue;
    const r = spawnSync(path, [], {
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: timeoutMs,
      env: { ...process.env, KILN_EVENT: e.event, KILN_DEVICE_UUID: e.uuid, KILN_SOTA_DIR: e.sotaDir, KILN_SERIAL: e.serial },
    });
    if (r.status !== 0) {
      failed++;
      const why = r.error ? r.error.message : r.signal ? `killed by ${r.signal}` : `exit ${r.status}`;
      log(`hook ${path} failed (${why}); the ${e.event === 'renew' ? 'renewal' : 'registration'} stands`);
    }
  }
  return failed;
}
