// Writing the device files into the sota directory as one unit: every file is
// staged (temp file, fsync), then all are renamed into place in one synchronous
// step; a failure puts back exactly what was there before.
import {
  closeSync,
  existsSync,
  lstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { KilnError, unreadable } from '../../pki/errors.js';

export interface DeviceFile {
  name: string;
  content: string;
  mode: number;
}

/** A file the device needs, read whole; when it cannot be, one line naming it (66, 77, 74). */
export function readDeviceFile(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw unreadable(what, path, err);
  }
}

/** A response key becomes a file name only if it is a plain name. */
export function isPlainFileName(key: string): boolean {
  return key.length > 0 && key.length <= 128 && key !== '.' && key !== '..' && !/[/\\\u0000-\u001f\u007f]/.test(key);
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const io = (what: string, err: unknown): KilnError =>
  new KilnError('io', `${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });

export interface Staging {
  /** Makes the sota directory if needed; remembers that it did. */
  prepare(): void;
  stage(files: DeviceFile[]): void;
  /** Renames every staged file into place; all or nothing. */
  commit(): void;
  /** Removes staged files and a directory this run created. Safe to call twice. */
  abort(): void;
}

export function createStaging(dir: string): Staging {
  let createdDir = false;
  const staged: { tmp: string; final: string }[] = [];
  const tag = `${process.pid}-${Date.now().toString(36)}`;

  const abort = (): void => {
    for (const s of staged.splice(0)) rmSync(s.tmp, { force: true });
    if (createdDir) {
      try {
        rmdirSync(dir);
      } catch {
        /* not empty: something else wrote there; leave it */
      }
      createdDir = false;
    }
  };

  return {
    prepare() {
      if (existsSync(dir)) return;
      try {
        mkdirSync(dir, { recursive: true, mode: 0o755 });
        createdDir = true;
      } catch (err) {
        throw io(`cannot create ${dir}`, err);
      }
    },
    stage(files) {
      for (const f of files) {
        if (!isPlainFileName(f.name))
          throw new KilnError('bad_request', `refusing unsafe file name from server: ${JSON.stringify(f.name.slice(0, 40))}`);
        const tmp = join(dir, `.${f.name}.${tag}.tmp`);
        staged.push({ tmp, final: join(dir, f.name) });
        try {
          const fd = openSync(tmp, 'wx', f.mode);
          try {
            writeSync(fd, f.content);
            fsyncSync(fd);
          } finally {
            closeSync(fd);
          }
        } catch (err) {
          throw io(`cannot write ${tmp}`, err);
        }
      }
    },
    commit() {
      const done: { final: string; backup?: string }[] = [];
      try {
        for (const s of staged) {
          let backup: string | undefined;
          if (existsSync(s.final)) {
            if (!lstatSync(s.final).isFile()) throw Object.assign(new Error(`${s.final} is not a regular file`), { code: 'EEXIST' });
            backup = `${s.final}.${tag}.bak`;
            renameSync(s.final, backup);
          }
          done.push({ final: s.final, backup });
          renameSync(s.tmp, s.final);
        }
        fsyncPath(dir);
      } catch (err) {
        for (const d of done.reverse()) {
          rmSync(d.final, { force: true });
          if (d.backup) renameSync(d.backup, d.final);
        }
        throw io(`cannot move the device files into ${dir}`, err);
      }
      for (const d of done) if (d.backup) rmSync(d.backup, { force: true });
      staged.length = 0;
      createdDir = false;
    },
    abort,
  };
}
