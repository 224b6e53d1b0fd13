// EST (issue 18): a real EST client (strongSwan's `pki --est`) and curl + openssl
// enroll with a lot's token and re-enroll with the device's certificate against
// `kilnctl serve` over HTTPS; refusals carry the RFC's status and a one-line reason.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPemSigner } from '../pki/signer.js';
import { signCertificate, certificatePem, parseCertificatePem } from '../pki/certificate.js';
import { FACTORY } from './helpers/pki.js';
import { kilnctl, run, type Run } from './helpers/proc.js';
import { startSite, type Site } from './helpers/site.js';

let site: Site;
let dir: string;
let base: string;
let token: string;
let manualToken: string;

/** A file in the test's directory. */
const at = (name: string): string => join(dir, name);

/** curl against the site: secrets go in a config file (-K), never on the command line. */
function curl(
  path: string,
  o: { csr?: string; cert?: string; key?: string; password?: string; type?: string } = {},
): { status: number; body: string; headers: string } {
  const conf = at(`curl-${randomUUID()}.conf`);
  writeFileSync(conf, o.password !== undefined ? `user = "device:${o.password}"\n` : '', { mode: 0o600 });
  const out = at(`out-${randomUUID()}`);
  const hdr = at(`hdr-${randomUUID()}`);
  const args = ['-sS', '-K', conf, '--cacert', join(site.pkiDir, 'factory_ca.pem'), '-o', out, '-D', hdr, '-w', '%{http_code}'];
  if (o.cert) args.push('--cert', o.cert, '--key', o.key!);
  if (o.csr !== undefined) args.push('-H', `Content-Type: ${o.type ?? 'application/pkcs10'}`, '--data-binary', `@${o.csr}`);
  const r = run('curl', [...args, `${base}${path}`]);
  if (r.code !== 0) throw new Error(`curl: ${r.stderr}`);
  return { status: Number(r.stdout), body: readFileSync(out, 'utf8'), headers: readFileSync(hdr, 'utf8') };
}

const ok = (r: Run): Run => {
  if (r.code !== 0) throw new Error(`${r.stdout}\n${r.stderr}`);
  return r;
};

/** A P-256 key (PEM) and a base64 DER CSR with the device subject, made by openssl. */
function opensslCsr(uuid: string, name = uuid, subject = `/CN=${uuid}/OU=${FACTORY}`): { key: string; csr: string } {
  const key = at(`${name}.key`);
  // a name's key is made once and kept: a second CSR of the same name has the same key
  if (!existsSync(key)) ok(run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]));
  const der = at(`${name}-${randomUUID()}.csr.der`);
  ok(run('openssl', ['req', '-new', '-key', key, '-subj', subject, '-outform', 'DER', '-out', der]));
  const csr = at(`${name}-${randomUUID()}.csr.b64`);
  writeFileSync(csr, readFileSync(der).toString('base64'));
  return { key, csr };
}

/** The certificates of a base64 certs-only PKCS#7, as PEM, read by openssl. */
function pkcs7Pem(body: string): string {
  const der = at(`p7-${randomUUID()}.der`);
  writeFileSync(der, Buffer.from(body, 'base64'));
  return ok(run('openssl', ['pkcs7', '-inform', 'DER', '-in', der, '-print_certs'])).stdout;
}

function savePem(name: string, pem: string): string {
  writeFileSync(at(name), pem);
  return at(name);
}

const verify = (certFile: string): Run =>
  run('openssl', ['verify', '-CAfile', join(site.pkiDir, 'factory_ca.pem'), '-untrusted', join(site.pkiDir, 'local-ca.pem'), certFile]);

const serialOf = (certFile: string): string =>
  ok(run('openssl', ['x509', '-in', certFile, '-noout', '-serial']))
    .stdout.trim()
    .split('=')[1]
    .toLowerCase();

/** `kilnctl devices show --json` of a device. */
function showDevice(uuid: string): {
  device: { serial: string; hardwareId: string };
  certificates: { serial: string; supersededBy: string | null; revokedAt: string | null }[];
} {
  return JSON.parse(ok(kilnctl(['devices', 'show', uuid, '--db', site.db, '--json'])).stdout);
}

/** Enrolls a new device with curl and the auto lot's token; returns its key and certificate files. */
function enrolled(): { uuid: string; key: string; cert: string } {
  const uuid = randomUUID();
  const { key, csr } = opensslCsr(uuid);
  const r = curl('/.well-known/est/simpleenroll', { csr, password: token });
  expect(r.status, r.body).toBe(200);
  return { uuid, key, cert: savePem(`${uuid}.pem`, pkcs7Pem(r.body)) };
}

beforeAll(async () => {
  const { tempDir } = await import('./helpers/pki.js');
  dir = tempDir('kiln-est-');
  // a module maker's bootstrap CA (IDevID) and one device identity from it, by openssl
  ok(run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', at('maker.key')]));
  ok(
    run('openssl', [
      'req',
      '-x509',
      '-new',
      '-key',
      at('maker.key'),
      '-subj',
      '/CN=Maker IDevID CA',
      '-days',
      '30',
      '-out',
      at('maker.pem'),
    ]),
  );
  ok(run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', at('idevid.key')]));
  ok(run('openssl', ['req', '-new', '-key', at('idevid.key'), '-subj', '/CN=module-0001', '-out', at('idevid.csr')]));
  ok(
    run('openssl', [
      'x509',
      '-req',
      '-in',
      at('idevid.csr'),
      '-CA',
      at('maker.pem'),
      '-CAkey',
      at('maker.key'),
      '-CAcreateserial',
      '-days',
      '30',
      '-out',
      at('idevid.pem'),
    ]),
  );
  site = await startSite(['--enrollment', 'token', '--est-bootstrap-ca', at('maker.pem')], { tls: true });
  base = site.server.url;
  ok(kilnctl(['lots', 'create', 'line1', '--db', site.db, '--token-out', at('line1.token')]));
  ok(kilnctl(['lots', 'create', 'line2', '--db', site.db, '--approval', 'manual', '--token-out', at('line2.token')]));
  token = readFileSync(at('line1.token'), 'utf8').trim();
  manualToken = readFileSync(at('line2.token'), 'utf8').trim();
});

afterAll(async () => {
  await site?.server.stop();
});

describe('EST: cacerts and csrattrs', () => {
  it('ok/cacerts is the local CA and the root as a certs-only PKCS#7 that openssl reads', () => {
    const r = curl('/.well-known/est/cacerts');
    expect(r.status).toBe(200);
    expect(r.headers).toMatch(/content-type: application\/pkcs7-mime; smime-type=certs-only/i);
    const subjects = pkcs7Pem(r.body).match(/^subject=.*$/gm);
    expect(subjects).toEqual([`subject=CN = ${FACTORY}, OU = ${FACTORY}`, `subject=CN = Factory-CA, OU = ${FACTORY}`]);
  });

  it('ok/csrattrs asks for ECDSA-SHA256 on P-256 and the device subject attributes', () => {
    const r = curl('/.well-known/est/line1/csrattrs');
    expect(r.status).toBe(200);
    expect(r.headers).toMatch(/content-type: application\/csrattrs/i);
    const der = at('csrattrs.der');
    writeFileSync(der, Buffer.from(r.body, 'base64'));
    const text = ok(run('openssl', ['asn1parse', '-inform', 'DER', '-in', der])).stdout;
    for (const name of ['ecdsa-with-SHA256', 'id-ecPublicKey', 'prime256v1', 'commonName', 'organizationalUnitName'])
      expect(text).toContain(name);
  });
});

describe('device validity and the CA', () => {
  it("ok/certificates end at the local CA's notAfter; /healthz and pki show warn that it ends within the validity", () => {
    const d = enrolled();
    const notAfter = (file: string): string => ok(run('openssl', ['x509', '-in', file, '-noout', '-enddate'])).stdout;
    // the default validity (7300 days) is longer than the new local CA's 10 years
    expect(notAfter(d.cert)).toBe(notAfter(join(site.pkiDir, 'local-ca.pem')));
    const health = JSON.parse(curl('/healthz').body) as { ca: { not_after: string; warning?: string } };
    expect(health.ca.warning).toMatch(/^the local CA expires at .* within the device validity of 7300 days/);
    expect(ok(kilnctl(['pki', 'show', '--dir', site.pkiDir])).stdout).toMatch(/^Warning: the local CA expires at /m);
    expect(site.server.logs()).toMatch(/"event":"ca_expiring"/);
  });
});

describe('EST: strongSwan pki --est', () => {
  it('ok/enrolls with a token (Basic password) and re-enrolls with its certificate and a new key', () => {
    const uuid = randomUUID();
    const dn = `CN=${uuid}, OU=${FACTORY}`;
    const pki = (args: string[]): Run => run('pki', args);
    const sh = (cmd: string): Run => ok(run('sh', ['-c', cmd]));
    sh(`pki --gen --type ecdsa --size 256 > ${at('ss1.key')}`);
    sh(`pki --req --in ${at('ss1.key')} --type ecdsa --dn "${dn}" > ${at('ss1.csr')}`);
    // the token is read from an options file, not the command line
    writeFileSync(at('ss1.opts'), `--userpass device:${token}\n`, { mode: 0o600 });
    const cas = ['--cacert', join(site.pkiDir, 'factory_ca.pem'), '--cacert', join(site.pkiDir, 'local-ca.pem')];
    const enroll = pki(['--est', '--url', base, '--in', at('ss1.csr'), ...cas, '--options', at('ss1.opts'), '--outform', 'pem']);
    expect(enroll.code, enroll.stderr).toBe(0);
    const first = savePem('ss1.pem', enroll.stdout);
    expect(verify(first).stdout).toContain('OK');

    sh(`pki --gen --type ecdsa --size 256 > ${at('ss2.key')}`);
    sh(`pki --req --in ${at('ss2.key')} --type ecdsa --dn "${dn}" > ${at('ss2.csr')}`);
    const renew = pki(['--est', '--url', base, '--in', at('ss2.csr'), ...cas, '--cert', first, '--key', at('ss1.key'), '--outform', 'pem']);
    expect(renew.code, renew.stderr).toBe(0);
    const second = savePem('ss2.pem', renew.stdout);
    expect(verify(second).stdout).toContain('OK');
    expect(serialOf(second)).not.toBe(serialOf(first));

    const view = showDevice(uuid);
    expect(view.device.serial).toBe(serialOf(second));
    expect(view.certificates.find((c) => c.serial === serialOf(first))?.supersededBy).toBe(serialOf(second));
    expect(view.certificates.find((c) => c.serial === serialOf(second))?.supersededBy).toBeNull();
  });
});

describe('EST: curl + openssl', () => {
  it('ok/simpleenroll with the token, then simplereenroll with the same key and with a new key', () => {
    const d = enrolled();
    expect(verify(d.cert).stdout).toContain('OK');
    // the same key again: a renewal still (a new certificate), not a repeat of the old one
    const same = opensslCsr(d.uuid);
    const r1 = curl('/.well-known/est/simplereenroll', { csr: same.csr, cert: d.cert, key: d.key });
    expect(r1.status, r1.body).toBe(200);
    const renewed = savePem(`${d.uuid}-r1.pem`, pkcs7Pem(r1.body));
    expect(verify(renewed).stdout).toContain('OK');
    expect(serialOf(renewed)).not.toBe(serialOf(d.cert));
    // then a new key, authenticated by the renewed certificate
    const next = opensslCsr(d.uuid, `${d.uuid}-new`);
    const r2 = curl('/.well-known/est/simplereenroll', { csr: next.csr, cert: renewed, key: d.key });
    expect(r2.status, r2.body).toBe(200);
    const third = savePem(`${d.uuid}-r2.pem`, pkcs7Pem(r2.body));
    expect(verify(third).stdout).toContain('OK');
    const history = showDevice(d.uuid).certificates;
    expect(history.map((c) => [c.serial, c.supersededBy])).toEqual([
      [serialOf(third), null],
      [serialOf(renewed), serialOf(third)],
      [serialOf(d.cert), serialOf(renewed)],
    ]);
  });

  it('ok/a renewal retried after its answer was lost gets the same new certificate; another key with the old one is refused', () => {
    const d = enrolled();
    const next = opensslCsr(d.uuid, `${d.uuid}-new`);
    const a = curl('/.well-known/est/simplereenroll', { csr: next.csr, cert: d.cert, key: d.key });
    const b = curl('/.well-known/est/simplereenroll', { csr: next.csr, cert: d.cert, key: d.key });
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(pkcs7Pem(b.body)).toBe(pkcs7Pem(a.body));
    const other = opensslCsr(d.uuid, `${d.uuid}-other`);
    const c = curl('/.well-known/est/simplereenroll', { csr: other.csr, cert: d.cert, key: d.key });
    expect(c.status).toBe(403);
    expect(c.body).toMatch(/^certificate [0-9a-f]+ was replaced by [0-9a-f]+: renew with the current certificate\n$/);
  });

  it('ok/a bootstrap certificate enrolls into the lot the URL names', () => {
    const uuid = randomUUID();
    const { csr } = opensslCsr(uuid);
    const r = curl('/.well-known/est/line1/simpleenroll', { csr, cert: at('idevid.pem'), key: at('idevid.key') });
    expect(r.status, r.body).toBe(200);
    expect(verify(savePem(`${uuid}.pem`, pkcs7Pem(r.body))).stdout).toContain('OK');
    const lots = JSON.parse(ok(kilnctl(['lots', 'list', '--db', site.db, '--json'])).stdout) as { name: string; admitted: number }[];
    expect(lots.find((l) => l.name === 'line1')!.admitted).toBeGreaterThanOrEqual(1);
  });

  it('ok/a manual lot answers 202 with Retry-After until an operator approves', () => {
    const uuid = randomUUID();
    const { csr } = opensslCsr(uuid);
    const r = curl('/.well-known/est/line2/simpleenroll', { csr, password: manualToken });
    expect(r.status).toBe(202);
    expect(r.headers).toMatch(/retry-after: 30/i);
    expect(r.body).toContain(`device ${uuid} awaits approval by an operator`);
    ok(kilnctl(['approvals', 'approve', uuid, '--db', site.db]));
    const again = curl('/.well-known/est/line2/simpleenroll', { csr, password: manualToken });
    expect(again.status, again.body).toBe(200);
  });
});

describe('EST: refusals', () => {
  it('fail/simpleenroll without a token is 401 with WWW-Authenticate; a wrong token, or one for another lot, 401', () => {
    const { csr } = opensslCsr(randomUUID());
    const none = curl('/.well-known/est/simpleenroll', { csr });
    expect(none.status).toBe(401);
    expect(none.headers).toMatch(/www-authenticate: Basic realm="kiln-est"/i);
    expect(none.body).toBe('an enrollment token is required in the OSF-TOKEN header\n');
    expect(curl('/.well-known/est/simpleenroll', { csr, password: 'kiln_lot_nope' }).status).toBe(401);
    const otherLot = curl('/.well-known/est/line2/simpleenroll', { csr, password: token });
    expect([otherLot.status, otherLot.body]).toEqual([401, 'the enrollment token is not valid\n']);
  });

  it('fail/a bootstrap certificate without a lot in the URL is 401', () => {
    const { csr } = opensslCsr(randomUUID());
    const r = curl('/.well-known/est/simpleenroll', { csr, cert: at('idevid.pem'), key: at('idevid.key') });
    expect(r.status).toBe(401);
    expect(r.body).toMatch(/lot named in the URL/);
  });

  it('fail/bad bodies are 400 or 415 with a one-line reason', () => {
    writeFileSync(at('junk.b64'), 'not base64 at all!');
    expect(curl('/.well-known/est/simpleenroll', { csr: at('junk.b64'), password: token })).toMatchObject({
      status: 400,
      body: 'the PKCS#10 request is not base64 (RFC 7030: base64-encoded DER)\n',
    });
    writeFileSync(at('notcsr.b64'), Buffer.from('hello').toString('base64'));
    const notCsr = curl('/.well-known/est/simpleenroll', { csr: at('notcsr.b64'), password: token });
    expect(notCsr.status).toBe(400);
    expect(notCsr.body.split('\n')).toHaveLength(2);
    const { csr } = opensslCsr(randomUUID());
    expect(curl('/.well-known/est/simpleenroll', { csr, password: token, type: 'application/json' }).status).toBe(415);
    const wrongOu = opensslCsr(randomUUID(), undefined, `/CN=${randomUUID()}/OU=other-factory`);
    const policy = curl('/.well-known/est/simpleenroll', { csr: wrongOu.csr, password: token });
    expect([policy.status, policy.body]).toEqual([400, `csr OU "other-factory" is not this factory (${FACTORY})\n`]);
  });

  it('fail/simplereenroll without a client certificate is 401', () => {
    const { csr } = opensslCsr(randomUUID());
    const r = curl('/.well-known/est/simplereenroll', { csr, password: token });
    expect(r.status).toBe(401);
    expect(r.body).toMatch(/current certificate as the TLS client certificate/);
  });

  it('fail/simplereenroll with a revoked certificate is 403', () => {
    const d = enrolled();
    ok(kilnctl(['devices', 'revoke', d.uuid, '--reason', 'keyCompromise', '--db', site.db]));
    const r = curl('/.well-known/est/simplereenroll', { csr: opensslCsr(d.uuid).csr, cert: d.cert, key: d.key });
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/^certificate [0-9a-f]+ was revoked \(keyCompromise\) at /);
  });

  it('fail/simplereenroll of a denied device is 403', () => {
    const d = enrolled();
    ok(kilnctl(['devices', 'deny', d.uuid, '--db', site.db]));
    const r = curl('/.well-known/est/simplereenroll', { csr: opensslCsr(d.uuid).csr, cert: d.cert, key: d.key });
    expect([r.status, r.body]).toEqual([403, `device ${d.uuid} is on the deny-list\n`]);
  });

  it("fail/simplereenroll with a foreign certificate (another CA's, a bootstrap one) is 403", () => {
    const { csr } = opensslCsr(randomUUID());
    const r = curl('/.well-known/est/simplereenroll', { csr, cert: at('idevid.pem'), key: at('idevid.key') });
    expect([r.status, r.body]).toEqual([403, "the client certificate was not issued by this factory's CA\n"]);
  });

  it('fail/simplereenroll with an expired certificate of this CA is 403', async () => {
    const d = enrolled();
    // the same device certificate, re-signed by the local CA with a validity that ended yesterday
    const current = parseCertificatePem(readFileSync(d.cert, 'utf8'));
    const signer = createPemSigner(readFileSync(join(site.pkiDir, 'local-ca.key')));
    const der = await signCertificate(
      {
        serial: Buffer.from('7e' + randomUUID().replace(/-/g, ''), 'hex'),
        issuerDer: current.issuerDer,
        subjectDer: current.subjectDer,
        spkiDer: current.spkiDer,
        notBefore: new Date(Date.now() - 10 * 86_400_000),
        notAfter: new Date(Date.now() - 86_400_000),
        extensions: [],
      },
      signer,
    );
    const expired = savePem(`${d.uuid}-expired.pem`, certificatePem(der));
    const r = curl('/.well-known/est/simplereenroll', { csr: opensslCsr(d.uuid).csr, cert: expired, key: d.key });
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/^certificate 7e[0-9a-f]+ expired at \d{4}-/);
  });

  it("fail/simplereenroll with another subject is 400 (RFC 7030 §4.2.2: the certificate's own)", () => {
    const d = enrolled();
    const other = opensslCsr(d.uuid, `${d.uuid}-x`, `/CN=${randomUUID()}/OU=${FACTORY}`);
    const r = curl('/.well-known/est/simplereenroll', { csr: other.csr, cert: d.cert, key: d.key });
    expect(r.status).toBe(400);
    expect(r.body).toMatch(/^the CSR's subject must be the certificate's own \(CN=/);
  });
});
