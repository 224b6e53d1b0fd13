// One wrapper for both engines: every store call's driver failure becomes the engine's
// one-line KilnError (naming the registry, never a password).
import type { KilnError } from '../../pki/errors.js';
import type { Store } from './store.js';

/** Left alone: the hot path maps its own failures; the accessors are synchronous. */
const UNGUARDED = new Set(['recordIssuance', 'writerStats', 'writerThreadForTests']);

export function guardStore(store: Store, mapError: (err: unknown) => KilnError): Store {
  const guarded = { ...store } as Record<string, unknown>;
  for (const [name, fn] of Object.entries(store)) {
    if (UNGUARDED.has(name) || typeof fn !== 'function') continue;
    guarded[name] = async (...args: unknown[]) => {
      try {
        return await (fn as (...a: unknown[]) => Promise<unknown>)(...args);
      } catch (err) {
        throw mapError(err);
      }
    };
  }
  return guarded as unknown as Store;
}
