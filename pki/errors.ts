// One error type for all of Kiln, and the one table that maps its codes to an
// HTTP status (server) and a sysexits exit code (CLIs). The message is public:
// it reaches the device or the operator. The cause is private: logs only.

export const ERROR_TABLE = {
  usage: { http: 400, exit: 64 },
  bad_request: { http: 400, exit: 65 },
  bad_csr: { http: 400, exit: 65 },
  policy: { http: 400, exit: 65 },
  not_found: { http: 404, exit: 65 },
  /** a device of a manual lot awaits an operator's approval: not a refusal, retry later */
  pending: { http: 202, exit: 75 },
  /** a file or registry that must exist does not (sysexits EX_NOINPUT) */
  no_input: { http: 503, exit: 66 },
  /** a file or directory cannot be created (EX_CANTCREAT) */
  cant_create: { http: 503, exit: 73 },
  /** the operating system refused access (EX_NOPERM) */
  permission: { http: 503, exit: 77 },
  denied: { http: 403, exit: 77 },
  unauthorized: { http: 401, exit: 77 },
  conflict: { http: 409, exit: 65 },
  too_large: { http: 413, exit: 65 },
  /** too many requests from one client address: retry after the Retry-After seconds */
  rate_limited: { http: 429, exit: 75 },
  unsupported_media_type: { http: 415, exit: 65 },
  unavailable: { http: 503, exit: 69 },
  io: { http: 503, exit: 74 },
  temporary: { http: 503, exit: 75 },
  config: { http: 500, exit: 78 },
  internal: { http: 500, exit: 70 },
} as const satisfies Record<string, { http: number; exit: number }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export class KilnError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KilnError';
    this.code = code;
  }

  get httpStatus(): number {
    return ERROR_TABLE[this.code].http;
  }

  get exitCode(): number {
    return ERROR_TABLE[this.code].exit;
  }
}

/** What a person reads for a system error code. */
const SYSTEM_SENTENCES: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a part of the path is not a directory',
  EEXIST: 'something of that name is in the way',
  EISDIR: 'it is a directory',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'the name is too long',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
  EBUSY: 'the resource is busy',
  ETXTBSY: 'the file is busy',
  EINVAL: 'invalid argument',
};

export type FileAction = 'read' | 'create' | 'write';

const systemCode = (err: unknown): string | undefined => {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
};

/** True for an error raised by the operating system (an errno code such as ENOENT). */
export const isSystemError = (err: unknown): boolean => systemCode(err) !== undefined;

/** `permission denied` for EACCES; the code itself when no sentence is known. */
export function systemSentence(err: unknown): string {
  const code = systemCode(err);
  return code ? (SYSTEM_SENTENCES[code] ?? code) : String((err as Error)?.message ?? err);
}

/**
 * The one mapping from a system error on a file to a sysexits code and a sentence:
 * `cannot create /proc/nope: no such file or directory` (73). Permission problems are
 * 77, a missing input 66, what cannot be created 73, everything else on a disk 74.
 */
export function fileError(action: FileAction, path: string, err: unknown, what = ''): KilnError {
  const code = systemCode(err);
  const target = what ? `${what} ${path}` : path;
  const message = `cannot ${action} ${target}: ${systemSentence(err)}`;
  let kind: ErrorCode;
  if (code === 'EACCES' || code === 'EPERM') kind = 'permission';
  else if (action === 'read' && (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR')) kind = 'no_input';
  else if (action !== 'read' && ['ENOENT', 'ENOTDIR', 'EEXIST', 'EISDIR', 'EROFS', 'ENAMETOOLONG', 'ELOOP'].includes(code ?? ''))
    kind = 'cant_create';
  else kind = 'io';
  return new KilnError(kind, message, { cause: err });
}

/**
 * A file the configuration names could not be read: `cannot read CA key <path>: no such
 * file or directory`. A configuration error (78), or 77 when the system refused access.
 */
export function unreadable(what: string, path: string, err: unknown, hint = ''): KilnError {
  const e = fileError('read', path, err, what);
  return new KilnError(e.code === 'permission' ? 'permission' : 'config', e.message + hint, { cause: err });
}

/** Which file action a failed system call was; undefined when it was not about a file. */
function actionOf(syscall: string | undefined): FileAction | undefined {
  if (!syscall) return undefined;
  if (['mkdir', 'rename', 'link', 'symlink', 'copyfile', 'mkdtemp'].includes(syscall)) return 'create';
  if (['write', 'unlink', 'rmdir', 'rm', 'chmod', 'chown', 'fsync', 'ftruncate', 'utime'].includes(syscall)) return 'write';
  if (['open', 'read', 'stat', 'lstat', 'access', 'scandir', 'opendir', 'readlink', 'realpath'].includes(syscall)) return 'read';
  return undefined;
}

/** A file error that nobody wrapped, as fileError would have: for the CLIs' last resort. */
export function fromSystemError(err: unknown): KilnError | undefined {
  const e = err as { syscall?: string; path?: string; dest?: string };
  const action = isSystemError(err) ? actionOf(e.syscall) : undefined;
  return action && e.path ? fileError(action, e.dest ?? e.path, err) : undefined;
}

/** Wraps anything thrown into a KilnError; unknown errors become `internal`. */
export function toKilnError(err: unknown): KilnError {
  if (err instanceof KilnError) return err;
  return new KilnError('internal', 'internal error', { cause: err });
}
