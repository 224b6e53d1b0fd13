// SQLite's failures as Kiln errors: a sentence an operator can act on and a sysexits code.
import { fileError, isSystemError, KilnError, type ErrorCode } from '../../../pki/errors.js';

const sqliteCode = (err: unknown): string => String((err as { code?: unknown })?.code ?? '');

/** Maps an error from opening, migrating or using the SQLite registry at `path`. */
export function sqliteError(err: unknown, path: string, doing: 'open' | 'migrate' | 'use'): KilnError {
  if (err instanceof KilnError) return err;
  if (isSystemError(err)) return fileError(doing === 'open' ? 'create' : 'write', path, err);
  const code = sqliteCode(err);
  const at = `the registry ${path}`;
  const [kind, message]: [ErrorCode, string] = code.startsWith('SQLITE_READONLY')
    ? ['permission', `${at} is read-only to this user: run as the server's user (the file and its directory must be writable)`]
    : code.startsWith('SQLITE_CANTOPEN')
      ? ['cant_create', `cannot open ${at}: the file or its directory is missing or not accessible`]
      : code === 'SQLITE_NOTADB'
        ? ['config', `${path} is not a SQLite registry`]
        : code.startsWith('SQLITE_CORRUPT')
          ? ['io', `${at} is damaged (${code}); restore it from a backup`]
          : code === 'SQLITE_FULL'
            ? ['io', `cannot write ${at}: no space left on the device`]
            : code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')
              ? ['temporary', `${at} is locked by another process; try again`]
              : code.startsWith('SQLITE_IOERR')
                ? ['io', `cannot ${doing === 'use' ? 'use' : doing} ${at}: input/output error (${code})`]
                : ['internal', `cannot ${doing} ${at}: ${(err as Error)?.message ?? String(err)}`];
  return new KilnError(kind, message, { cause: err });
}
