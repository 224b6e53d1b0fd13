// Differential test against OpenSSL (issue 14): thousands of CSRs derived from valid
// ones (OpenSSL-made, test/fixtures/csr-seeds.json) by seeded mutations go through the
// sign pipeline on the native path, the node:crypto path and the HSM path. Every answer
// is a 201 or a 4xx, never a 5xx; every 201's CSR is one OpenSSL also parses and
// verifies, with the same subject and key; every issued certificate verifies.
import { createPrivateKey, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { unpemStrict, pem } from '../pki/der.js';
import { KilnError } from '../pki/errors.js';
import { openPkcs11Signer } from '../pki/pkcs11/open.js';
import { createKeySigner, type Signer } from '../pki/signer.js';
import { openSqliteStore } from '../server/db/sqlite/store.js';
import { loadNativeEcdsa } from '../server/native-ecdsa.js';
import { loadFactoryPki, signingFrom } from '../server/pki-dir.js';
import { createSignService, type SignService } from '../server/sign-service.js';
import { mutate, seededRandom } from './helpers/mutate.js';
import { FACTORY, lmpBody, makePkiDir, tempDir } from './helpers/pki.js';
import { kilnctl, ROOT, run } from './helpers/proc.js';
import { makeSoftHsm, uriFor } from './helpers/softhsm.js';

interface Seed {
  name: string;
  uuid: string;
  key: string;
  csr: string;
}
const SEEDS = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/csr-seeds.json'), 'utf8')) as Seed[];

interface Path {
  name: string;
  mutations: number;
  seed: number;
  open: () => Promise<{ service: SignService; pkiDir: string; signer: Signer }>;
}

function serviceFor(pkiDir: string, signer: Signer, ecVerifier?: ReturnType<typeof loadNativeEcdsa>['verifier']): SignService {
  return createSignService({
    ...signingFrom(loadFactoryPki(pkiDir, signer)),
    store: openSqliteStore(':memory:'),
    settings: {
      gateway: 'https://gw.test:8443',
      ostree: 'https://gw.test:8443',
      validityDays: 30,
      serialFromUuid: false,
      rejectReregistration: false,
      rekey: 'allow',
    },
    clock: () => new Date(),
    random: (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(Math.random() * 256))),
    ecVerifier,
  });
}

const PATHS: Path[] = [
  {
    name: 'native',
    mutations: 3000,
    seed: 14,
    open: async () => {
      const pkiDir = await makePkiDir();
      const ecdsa = loadNativeEcdsa();
      const signer = ecdsa.pemSigner(readFileSync(join(pkiDir, 'local-ca.key')));
      return { service: serviceFor(pkiDir, signer, ecdsa.verifier), pkiDir, signer };
    },
  },
  {
    name: 'node:crypto',
    mutations: 1500,
    seed: 15,
    open: async () => {
      const pkiDir = await makePkiDir();
      const signer = createKeySigner(createPrivateKey(readFileSync(join(pkiDir, 'local-ca.key'))));
      return { service: serviceFor(pkiDir, signer), pkiDir, signer };
    },
  },
  {
    name: 'HSM',
    mutations: 600,
    seed: 16,
    open: async () => {
      const hsm = makeSoftHsm();
      hsm.initToken('mut', '1234', '5678');
      process.env.SOFTHSM2_CONF = hsm.env.SOFTHSM2_CONF;
      const uri = uriFor('mut', 'local-ca', hsm.pinFile('1234'));
      const pkiDir = join(tempDir(), 'pki');
      const init = kilnctl(['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.test', '--ca-key', uri], {
        env: hsm.env,
      });
      expect(init.code).toBe(0);
      const signer = await openPkcs11Signer(uri, (p) => readFileSync(p, 'utf8'));
      return { service: serviceFor(pkiDir, signer), pkiDir, signer };
    },
  },
];

const openssl = (args: string[]) => run('openssl', args);

const signers: Signer[] = [];
afterAll(async () => {
  for (const s of signers) await s.close();
});

describe.each(PATHS)('mutated CSRs on the $name path', (path) => {
  it(`ok/${path.mutations} mutations: 201 or 4xx, never 5xx; every 201 agrees with OpenSSL`, { timeout: 240_000 }, async () => {
    const { service, pkiDir, signer } = await path.open();
    signers.push(signer);
    const random = seededRandom(path.seed);
    const counts = { total: 0, created: 0, refused: 0 };
    const byKind = new Map<string, { n: number; created: number }>();
    const errors: string[] = [];
    const created = new Map<string, { csr: string; cert: string }>();
    for (let i = 0; i < path.mutations; i++) {
      const seed = SEEDS[i % SEEDS.length];
      const key = createPrivateKey(seed.key);
      const { der, kind } = mutate(unpemStrict(seed.csr, 'CERTIFICATE REQUEST'), key, 'sha256', random);
      const csr = pem('CERTIFICATE REQUEST', der);
      counts.total++;
      const k = byKind.get(kind) ?? { n: 0, created: 0 };
      k.n++;
      byKind.set(kind, k);
      try {
        const files = await service.sign(lmpBody({ csr, uuid: seed.uuid }), { requestId: randomUUID(), clientAddress: '127.0.0.1' });
        counts.created++;
        k.created++;
        created.set(der.toString('hex'), { csr, cert: files['client.pem'] });
      } catch (err) {
        if (err instanceof KilnError && err.httpStatus >= 400 && err.httpStatus < 500 && !err.message.includes('\n')) counts.refused++;
        else errors.push(`${kind}: ${err instanceof KilnError ? `${err.httpStatus} ${err.message}` : String(err)}`);
      }
    }
    expect(errors).toEqual([]);
    expect(counts.created + counts.refused).toBe(counts.total);
    // the seeds themselves, unmutated, must register (else the test proves nothing)
    expect(counts.created).toBeGreaterThan(0);

    // every distinct CSR Kiln signed: OpenSSL parses and verifies it, with the subject and key of the certificate
    const dir = tempDir('kiln-mutation-');
    mkdirSync(join(dir, 'c'));
    let n = 0;
    for (const { csr, cert } of created.values()) {
      const c = join(dir, 'c', `${n}.csr`);
      const x = join(dir, 'c', `${n++}.pem`);
      writeFileSync(c, csr);
      writeFileSync(x, cert);
      const req = openssl(['req', '-in', c, '-noout', '-verify']);
      expect(req.code, `${c}: ${req.stderr}`).toBe(0);
      expect(req.stderr + req.stdout).toMatch(/verify OK/i);
      const subject = (args: string[]) =>
        openssl([...args, '-noout', '-subject', '-nameopt', 'RFC2253']).stdout.replace(/^subject=\s*/, '');
      expect(subject(['x509', '-in', x])).toBe(subject(['req', '-in', c]));
      expect(openssl(['x509', '-in', x, '-noout', '-pubkey']).stdout).toBe(openssl(['req', '-in', c, '-noout', '-pubkey']).stdout);
      const v = openssl(['verify', '-CAfile', join(pkiDir, 'factory_ca.pem'), '-untrusted', join(pkiDir, 'local-ca.pem'), x]);
      expect(v.stdout, v.stderr).toMatch(/: OK$/m);
    }
    const kinds = [...byKind.entries()].sort().map(([kind, v]) => `${kind} ${v.n}/${v.created}`);
    process.stdout.write(
      `mutation ${path.name}: ${counts.total} CSRs, ${counts.created} x 201 (${created.size} distinct, all OpenSSL-verified), ${counts.refused} x 4xx, 0 x 5xx; by kind (n/201): ${kinds.join(', ')}\n`,
    );
  });
});
