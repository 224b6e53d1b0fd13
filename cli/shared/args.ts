// Command-line arguments every admin command reads the same way.
import { isCanonicalUuid } from '../../pki/policy.js';
import { usage } from './run.js';

/** Device UUIDs: each canonical, lower-cased, each once. */
export function uuidsArg(args: string[]): string[] {
  for (const u of args) if (!isCanonicalUuid(u)) throw usage(`"${u}" is not a device UUID`);
  return [...new Set(args.map((u) => u.toLowerCase()))];
}
