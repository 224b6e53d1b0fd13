// Readiness (GET /readyz): may this server take registrations now? Each check is named
// with a line for the operator: the registry's (writer round trip, the file is the one
// opened and writable, free disk), the CA key answering a signature, and the CA not
// expiring within a margin. The public answer names the checks; the details (paths,
// token labels, PKCS#11 return codes) are for the admin listener only.
import { randomBytes, verify } from 'node:crypto';
import { KilnError } from '../pki/errors.js';
import type { Signer } from '../pki/signer.js';
import type { ReadinessCheck, Store } from './db/store.js';

export interface Readiness {
  check(): Promise<{ ok: boolean; checks: ReadinessCheck[] }>;
}

/** Signs and verifies a probe, so a broken key shows at start-up and in /readyz, not on the first device. */
export async function selfTest(signer: Signer): Promise<void> {
  const probe = randomBytes(32);
  let ok = false;
  try {
    const sig = await signer.sign(probe);
    ok = verify(signer.algorithm.hash, probe, { key: signer.spkiDer, format: 'der', type: 'spki', dsaEncoding: 'der' }, sig);
  } catch (err) {
    throw new KilnError('config', `CA key self-test failed: ${(err as Error).message}`, { cause: err });
  }
  if (!ok) throw new KilnError('config', 'CA key self-test failed: signature does not verify');
}

/** A key probe is signed at most this often (an HSM is not asked on every scrape). */
const KEY_PROBE_MS = 5000;

export function createReadiness(d: {
  store: Store;
  signer: Signer;
  caNotAfter: Date;
  /** the CA must stay valid at least this many days */
  marginDays: number;
  clock: () => Date;
}): Readiness {
  let probe: { at: number; result: Promise<ReadinessCheck> } | undefined;
  const keyCheck = (): Promise<ReadinessCheck> => {
    const now = Date.now();
    if (!probe || now - probe.at > KEY_PROBE_MS)
      probe = {
        at: now,
        result: selfTest(d.signer).then(
          () => ({ name: 'ca_key', ok: true, detail: JSON.stringify(d.signer.describe()) }),
          (err: Error) => ({ name: 'ca_key', ok: false, detail: `${err.message} (${JSON.stringify(d.signer.describe())})` }),
        ),
      };
    return probe.result;
  };
  return {
    async check() {
      const registry = await d.store.readiness().catch((err: Error) => [{ name: 'registry', ok: false, detail: err.message }]);
      const left = (d.caNotAfter.getTime() - d.clock().getTime()) / 86_400_000;
      const checks = [
        ...registry,
        await keyCheck(),
        {
          name: 'ca_expiry',
          ok: left >= d.marginDays,
          detail: `the local CA expires at ${d.caNotAfter.toISOString()} (${Math.floor(left)} days; margin ${d.marginDays})`,
        },
      ];
      return { ok: checks.every((c) => c.ok), checks };
    },
  };
}
