// Runs a CLI's main function: one-line messages on stderr and sysexits codes,
// from the one error table.
import { fromSystemError, KilnError, toKilnError } from '../../pki/errors.js';

export const EXIT_USAGE = 64;

/** The exit codes, for --help texts (the one table is pki/errors.ts). */
export const EXIT_CODES_HELP = `Exit codes (sysexits): 0 ok, 64 usage, 65 bad data or refused, 66 missing input (file or registry),
69 unavailable (port in use), 70 internal, 73 cannot create, 74 input/output error, 75 temporary
(retry), 77 permission denied, 78 configuration.
`;

export interface CommanderLikeError {
  code: string;
  exitCode: number;
}

const isCommanderError = (e: unknown): e is CommanderLikeError =>
  typeof e === 'object' &&
  e !== null &&
  typeof (e as CommanderLikeError).code === 'string' &&
  (e as CommanderLikeError).code.startsWith('commander.');

/** Maps anything thrown to an exit code, printing a one-line reason. */
export function exitCodeFor(prog: string, err: unknown, stderr: (s: string) => void = (s) => process.stderr.write(s)): number {
  if (isCommanderError(err)) {
    // commander already printed its message (or help/version)
    return ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(err.code) ? 0 : EXIT_USAGE;
  }
  const e = fromSystemError(err) ?? toKilnError(err);
  const detail = e.code === 'internal' && e.cause instanceof Error ? `: ${e.cause.message}` : '';
  stderr(`${prog}: ${e.message}${detail}\n`);
  return e.exitCode;
}

export async function runMain(prog: string, main: () => Promise<number | void>): Promise<void> {
  try {
    process.exitCode = (await main()) ?? 0;
  } catch (err) {
    process.exitCode = exitCodeFor(prog, err);
  }
}

export const usage = (msg: string): KilnError => new KilnError('usage', msg);
