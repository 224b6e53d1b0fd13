// device-register: make a key and CSR, ask the server to sign it, write the
// device files. Leaves the sota directory as it was on any failure.
import { execFile } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCsr, DEVICE_CSR_EXTENSIONS, deviceSubject } from '../../pki/csr-builder.js';
import { pem } from '../../pki/der.js';
import { KilnError } from '../../pki/errors.js';
import { parseCertificatePem, type ParsedCertificate } from '../../pki/certificate.js';
import { createStaging, isPlainFileName, readDeviceFile, type DeviceFile } from './files.js';
import { p11Section } from './hsm-config.js';
import { openDeviceHsm, type DeviceHsm } from './hsm.js';
import { checkReachable, parseFiles, postSign, refusal } from './http.js';
import { helpText, osReleasePath, parseArgs, parseOsRelease, resolveOptions, type Options } from './options.js';
import { clearPending, readPending, savePending } from './pending.js';
import { buildSignBody } from './request.js';
import { VERSION } from '../../pki/version.js';
import { renewMain } from './renew.js';
import { runHooks } from './hooks.js';

const KEY_FILE = 'pkey.pem';

const DEFAULT_API_NOTE = (url: string): string =>
  `DEVICE_API is not set, so the default ${url} was used; for a factory server set DEVICE_API=http://<kiln-host>:8000/sign`;

function readOsRelease(path: string): Record<string, string> {
  try {
    return parseOsRelease(readFileSync(path, 'utf8'));
  } catch {
    return {};
  }
}

function startDaemon(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('/bin/sh', ['-c', command], (err, _out, stderr) =>
      err ? reject(new KilnError('unavailable', `registered, but "${command}" failed: ${stderr.trim() || err.message}`)) : resolve(),
    );
  });
}

export async function main(argv: string[], env: NodeJS.ProcessEnv, say: (s: string) => void): Promise<number> {
  if (argv[0] === 'renew') return renewMain(argv.slice(1), env, say);
  const raw = parseArgs(argv);
  if (raw.help) return (say(helpText()), 0);
  if (raw.version) return (say(`device-register ${VERSION}\n`), 0);
  const o = resolveOptions(raw, env, readOsRelease(osReleasePath(raw)));
  if (o.apiTokenFile) o.apiToken = readDeviceFile('the API token file', o.apiTokenFile).toString('utf8').trim();
  if (o.hsmPinsFile) {
    // HSM_PIN= and HSM_SOPIN= lines of a PIN file (0600, written once per device)
    const pins = parseOsRelease(readDeviceFile('the HSM PIN file', o.hsmPinsFile).toString('utf8'));
    o.hsmPin ??= pins.HSM_PIN;
    o.hsmSoPin ??= pins.HSM_SOPIN || undefined;
    if (!o.hsmPin) throw new KilnError('config', `${o.hsmPinsFile} has no HSM_PIN= line`);
  }
  if (o.deviceApiDefaulted) process.stderr.write(`device-register: ${DEFAULT_API_NOTE(o.deviceApi)}\n`);

  if (!o.force && ['sql.db', 'client.pem'].some((f) => existsSync(join(o.sotaDir, f)))) {
    throw new KilnError(
      'conflict',
      `device appears to be registered already (${o.sotaDir} has sql.db or client.pem); use --force 1 to register again`,
    );
  }

  // a request that awaits approval is retried as the same request: its UUID and key
  const pending = o.hsmModule ? undefined : readPending(o.sotaDir);
  if (pending && (raw.uuid === undefined || String(raw.uuid).toLowerCase() === pending.uuid)) {
    if (raw.name === undefined) o.name = pending.uuid;
    o.uuid = pending.uuid;
  }
  const identity = { key: pending && pending.uuid === o.uuid ? pending.key : undefined };

  const staging = createStaging(o.sotaDir);
  const hsm = o.hsmModule
    ? await openDeviceHsm({ module: o.hsmModule, pin: o.hsmPin ?? '', soPin: o.hsmSoPin, force: o.force })
    : undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    staging.abort();
    hsm?.rollback();
    process.stderr.write(`device-register: interrupted by ${signal}; nothing was written\n`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let serial: string;
  try {
    serial = await register(o, staging, hsm, identity);
  } catch (err) {
    staging.abort();
    hsm?.rollback();
    if (err instanceof KilnError && err.code === 'pending' && identity.key) savePending(o.sotaDir, { uuid: o.uuid, key: identity.key });
    // a device that never had DEVICE_API set talks to the cloud: say so where the error is read
    if (o.deviceApiDefaulted && err instanceof KilnError && err.code !== 'io')
      throw new KilnError(err.code, `${err.message} (${DEFAULT_API_NOTE(o.deviceApi)})`, { cause: err });
    throw err;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    hsm?.close();
  }
  clearPending(o.sotaDir);
  say(`Device ${o.uuid} (${o.name}) is now registered${o.production ? ' as a production device' : ''}.\n`);
  runHooks(o.hooksDir, { event: 'register', uuid: o.uuid, sotaDir: o.sotaDir, serial }, (l) =>
    process.stderr.write(`device-register: ${l}\n`),
  );
  if (o.startDaemon) await startDaemon(o.startDaemonCommand);
  return 0;
}

async function register(
  o: Options,
  staging: ReturnType<typeof createStaging>,
  hsm: DeviceHsm | undefined,
  identity: { key?: KeyObject },
): Promise<string> {
  const key = hsm ? undefined : (identity.key ??= generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
  const csr = pem(
    'CERTIFICATE REQUEST',
    await createCsr({
      subject: deviceSubject(o.uuid, o.factory, o.production),
      key: hsm?.signer ?? key!,
      extensions: DEVICE_CSR_EXTENSIONS(),
    }),
  );

  const ca = o.caFile ? readDeviceFile('the CA file', o.caFile) : undefined;
  await checkReachable(o.deviceApi, o.timeoutMs, ca);
  const answer = await postSign(o.deviceApi, buildSignBody(o, csr), { [o.apiTokenHeader]: o.apiToken }, o.timeoutMs, ca);
  if (answer.status !== 201) throw refusal(answer);

  const returned = parseFiles(answer.text);
  const files: DeviceFile[] = [];
  for (const [name, content] of Object.entries(returned)) {
    if (!isPlainFileName(name) || name === KEY_FILE) {
      throw new KilnError('bad_request', `refusing unsafe file name from server: ${JSON.stringify(name.slice(0, 40))}`);
    }
    files.push({ name, content, mode: 0o644 });
  }
  if (!returned['client.pem']) throw new KilnError('bad_request', 'server answered 201 without client.pem');
  let cert: ParsedCertificate | undefined;
  try {
    cert = parseCertificatePem(returned['client.pem']);
  } catch {
    // written as sent (the hooks get an empty serial); an HSM cannot store it
    if (hsm) throw new KilnError('bad_request', 'server answered 201 with a client.pem that is not a certificate');
  }
  if (hsm) {
    hsm.importCertificate(cert!.der, cert!.subjectDer);
    // sota.toml now carries the PIN: readable by root only
    const toml = files.find((f) => f.name === 'sota.toml');
    if (toml) Object.assign(toml, { content: toml.content + p11Section(o.hsmModule!, o.hsmPin ?? ''), mode: 0o600 });
  } else {
    files.push({ name: KEY_FILE, content: key!.export({ type: 'sec1', format: 'pem' }).toString(), mode: 0o600 });
  }

  staging.prepare();
  staging.stage(files);
  staging.commit();
  return cert?.serialHex ?? '';
}
