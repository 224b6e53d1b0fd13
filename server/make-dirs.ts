// Creating a directory and its missing parents, one level at a time.
// Node's mkdirSync({ recursive: true }) never returns for a path under /proc
// (mkdir answers ENOENT there, and it retries forever); this walks up to the first
// existing ancestor and creates each level itself, so every failure is one error.
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileError } from '../pki/errors.js';

export function makeDirs(dir: string, mode = 0o777): void {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    let isDir: boolean;
    try {
      isDir = statSync(d).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fileError('create', dir, err);
      missing.push(d);
      if (dirname(d) === d) break;
      continue;
    }
    if (!isDir) {
      const code = d === dir ? 'EEXIST' : 'ENOTDIR';
      throw fileError('create', dir, Object.assign(new Error(`${d} is not a directory`), { code }));
    }
    break;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fileError('create', dir, err);
    }
  }
}
