// One error type for all of Kiln, and the one table that maps its codes to an
// HTTP status (server) and a sysexits exit code (CLIs). The message is public:
// it reaches the device or the operator. The cause is private: logs only.

export const ERROR_TABLE = {
  usage: { http: 400, exit: 64 },
  bad_request: { http: 400, exit: 65 },
  bad_csr: { http: 400, exit: 65 },
  policy: { http: 400, exit: 65 },
  not_found: { http: 404, exit: 65 },
  denied: { http: 403, exit: 77 },
  unauthorized: { http: 401, exit: 77 },
  conflict: { http: 409, exit: 65 },
  too_large: { http: 413, exit: 65 },
  unsupported_media_type: { http: 415, exit: 65 },
  unavailable: { http: 503, exit: 69 },
  io: { http: 500, exit: 74 },
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

/** A file the configuration names could not be read: `cannot read <what> <path>: ENOENT`. */
export function unreadable(what: string, path: string, err: unknown): KilnError {
  const code = (err as { code?: string } | undefined)?.code ?? 'error';
  return new KilnError('config', `cannot read ${what ? `${what} ` : ''}${path}: ${code}`, { cause: err });
}

/** Wraps anything thrown into a KilnError; unknown errors become `internal`. */
export function toKilnError(err: unknown): KilnError {
  if (err instanceof KilnError) return err;
  return new KilnError('internal', 'internal error', { cause: err });
}
