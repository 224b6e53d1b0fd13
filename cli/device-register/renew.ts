// device-register renew: EST simplereenroll (RFC 7030 §4.2.2) with the device's current
// certificate as the TLS client certificate, a new key (or the current one), and the
// same subject. The new client.pem, client.chained and pkey.pem replace the old ones
// all together; on any failure the old files stay as they were (exit 75 when a retry
// may succeed). A new key is kept in <sota>/.kiln-renew.key until the renewal lands,
// so a retry after a lost answer asks with the same key and gets the same certificate.
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { certificatePem, parseCertificatePem, pemCertificates, type ParsedCertificate } from '../../pki/certificate.js';
import { createCsr, DEVICE_CSR_EXTENSIONS } from '../../pki/csr-builder.js';
import { KilnError } from '../../pki/errors.js';
import { nameValue } from '../../pki/name.js';
import { OID } from '../../pki/oids.js';
import { readCertsOnlyPkcs7 } from '../../pki/pkcs7.js';
import { createKeySigner } from '../../pki/signer.js';
import { createStaging, readDeviceFile } from './files.js';
import { HOOKS_DIR, runHooks } from './hooks.js';
import { postReenroll, reasonOf, refusal } from './http.js';

export const RENEW_HELP = `usage: device-register renew [options]

Renews the device certificate over EST (simplereenroll) with the current certificate
as the TLS client certificate; replaces client.pem, client.chained and pkey.pem together.

  --sota-dir DIR    the device files (default /var/sota)
  --est-url URL     the EST base URL (default $KILN_EST_URL, else DEVICE_API's origin
                    + /.well-known/est)
  --ca-file FILE    trust this CA file for the server (default <sota-dir>/root.crt)
  --keep-key        keep the current key (default: a new P-256 key)
  --force           renew now, even before two thirds of the certificate's lifetime
  --hooks-dir DIR   run these executables afterwards (default ${HOOKS_DIR})
  --timeout S       seconds to wait for the server (default 30)

Exit codes: 0 renewed (or not due yet), 64 usage, 65 bad answer, 66 no certificate,
75 temporary failure (retry later), 77 refused, 78 the key is not a file.
`;

const PENDING_KEY = '.kiln-renew.key';

/** When a certificate is due: two thirds into its lifetime. */
export const renewalDue = (c: { notBefore: Date; notAfter: Date }): Date =>
  new Date(c.notBefore.getTime() + ((c.notAfter.getTime() - c.notBefore.getTime()) * 2) / 3);

const read = (path: string, what: string): string => readDeviceFile(what, path).toString('utf8');

function estBase(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const given = flag ?? env.KILN_EST_URL;
  if (given) return given.replace(/\/+$/, '');
  if (!env.DEVICE_API) throw new KilnError('usage', 'no EST URL: pass --est-url, or set KILN_EST_URL or DEVICE_API');
  return `${new URL(env.DEVICE_API).origin}/.well-known/est`;
}

export async function renewMain(argv: string[], env: NodeJS.ProcessEnv, say: (s: string) => void): Promise<number> {
  let a;
  try {
    a = parseArgs({
      args: argv,
      options: {
        'sota-dir': { type: 'string' },
        'est-url': { type: 'string' },
        'ca-file': { type: 'string' },
        'keep-key': { type: 'boolean' },
        force: { type: 'boolean' },
        'hooks-dir': { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    throw new KilnError('usage', (err as Error).message);
  }
  if (a.help) return (say(RENEW_HELP), 0);
  const sotaDir = (a['sota-dir'] ?? '/var/sota').replace(/(.)\/+$/, '$1');
  const timeout = Number(a.timeout ?? 30);
  if (!(timeout > 0 && timeout <= 600)) throw new KilnError('usage', '--timeout must be between 0 and 600 seconds');
  const url = `${estBase(a['est-url'], env)}/simplereenroll`;

  const certPem = read(join(sotaDir, 'client.pem'), 'the device certificate');
  let current: ParsedCertificate;
  try {
    current = parseCertificatePem(certPem);
  } catch (err) {
    throw new KilnError('bad_request', `${join(sotaDir, 'client.pem')} is not a certificate`, { cause: err });
  }
  if (!existsSync(join(sotaDir, 'pkey.pem')))
    throw new KilnError(
      'config',
      `${sotaDir} has no pkey.pem: the device key is in an HSM, which device-register renew cannot use for TLS; use kiln-renew (curl with the PKCS#11 engine)`,
    );
  const keyPem = read(join(sotaDir, 'pkey.pem'), 'the device key');
  const chained = existsSync(join(sotaDir, 'client.chained')) ? read(join(sotaDir, 'client.chained'), 'the certificate chain') : certPem;
  const due = renewalDue(current);
  if (!a.force && Date.now() < due.getTime()) {
    say(
      `Certificate ${current.serialHex} is not due for renewal until ${due.toISOString()} (expires ${current.notAfter.toISOString()}).\n`,
    );
    return 0;
  }
  const caFile = a['ca-file'] ?? join(sotaDir, 'root.crt');
  const ca = readDeviceFile('the CA file', caFile);

  // the key to renew with: the current one, a new one kept from a failed attempt, or a new one
  const pendingPath = join(sotaDir, PENDING_KEY);
  let key: KeyObject;
  if (a['keep-key']) key = createPrivateKey(keyPem);
  else if (existsSync(pendingPath)) key = createPrivateKey(readFileSync(pendingPath));
  else {
    key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    writeFileSync(pendingPath, key.export({ type: 'sec1', format: 'pem' }), { mode: 0o600 });
  }
  const dropPending = (): void => rmSync(pendingPath, { force: true });

  const csr = await createCsr({ subject: current.subjectDer, key, extensions: DEVICE_CSR_EXTENSIONS() });
  const answer = await postReenroll(url, csr.toString('base64'), { cert: certPem, key: keyPem }, timeout * 1000, ca);
  if (answer.status !== 200) {
    const e = refusal(answer);
    // a refusal will not turn into a certificate by retrying with this key
    if (e.code !== 'temporary' && e.code !== 'pending') dropPending();
    throw new KilnError(e.code, e.message.replace('registration refused', 'renewal refused'));
  }
  let issued: ParsedCertificate;
  try {
    const [der] = readCertsOnlyPkcs7(Buffer.from(answer.text.replace(/\s+/g, ''), 'base64'));
    issued = parseCertificatePem(certificatePem(der));
  } catch (err) {
    throw new KilnError('bad_request', `server answered 200 with a body that is not a certs-only PKCS#7: ${reasonOf(answer.text)}`, {
      cause: err,
    });
  }
  if (!issued.spkiDer.equals(createKeySigner(key).spkiDer))
    throw new KilnError('bad_request', 'server answered with a certificate for another key');
  if (!issued.subjectDer.equals(current.subjectDer))
    throw new KilnError('bad_request', 'server answered with a certificate for another subject');

  // client.chained: the new certificate, then the CA chain the old one was sent with
  const chain = pemCertificates(chained).slice(1).map(certificatePem);
  const newPem = certificatePem(issued.der);
  const staging = createStaging(sotaDir);
  try {
    staging.stage([
      { name: 'client.pem', content: newPem, mode: 0o644 },
      { name: 'client.chained', content: [newPem, ...chain].join(''), mode: 0o644 },
      { name: 'pkey.pem', content: key.export({ type: 'sec1', format: 'pem' }).toString(), mode: 0o600 },
    ]);
    staging.commit();
  } catch (err) {
    staging.abort();
    throw err;
  }
  dropPending();
  const uuid = nameValue(issued.subject, OID.commonName) ?? '';
  say(`Device ${uuid}: certificate ${current.serialHex} renewed as ${issued.serialHex}, valid until ${issued.notAfter.toISOString()}.\n`);
  runHooks(a['hooks-dir'] ?? HOOKS_DIR, { event: 'renew', uuid, sotaDir, serial: issued.serialHex }, (l) =>
    process.stderr.write(`device-register: ${l}\n`),
  );
  return 0;
}
