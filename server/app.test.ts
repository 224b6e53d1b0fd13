import { generateKeyPairSync, randomUUID, X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeTestApp, type TestApp } from '../test/helpers/app.js';
import { deviceCsr, FACTORY, lmpBody } from '../test/helpers/pki.js';
import { parseCertificatePem } from '../pki/certificate.js';
import { createCsr, deviceSubject } from '../pki/csr-builder.js';
import { pem } from '../pki/der.js';
import { OID } from '../pki/oids.js';

const DAY = 86_400_000;

async function registered(t: TestApp, uuid: string): Promise<number> {
  return (await t.store.certificatesOf(uuid)).length + ((await t.store.getDevice(uuid)) ? 1 : 0);
}

describe('POST /sign', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeTestApp();
  });

  it('ok/lmp-device-register body: 201 with exactly the four files', async () => {
    const { uuid, csrPem } = await deviceCsr({ production: true });
    const before = Date.now();
    const res = await t.request(lmpBody({ csr: csrPem, uuid }));
    expect(res.status).toBe(201);
    const files = (await res.json()) as Record<string, string>;
    expect(Object.keys(files).sort()).toEqual(['client.chained', 'client.pem', 'root.crt', 'sota.toml']);
    expect(files['root.crt']).toBe(t.pki.rootPem);
    expect(files['client.chained']).toBe(files['client.pem'] + '\n' + t.pki.local.certPem);
    expect(files['sota.toml']).toContain('primary_ecu_hardware_id = "intel-corei7-64"');
    expect(files['sota.toml']).toContain('compose_apps = "shellhttpd"');

    const cert = parseCertificatePem(files['client.pem']);
    const csrSubject = (await import('../pki/csr.js')).parseCsrPem(csrPem).subjectDer;
    expect(cert.subjectDer.equals(csrSubject)).toBe(true);
    expect(cert.issuerDer.equals(t.pki.local.cert.subjectDer)).toBe(true);
    expect(cert.notBefore.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    // +7300 days as the reference, but never past the local CA's own notAfter (10 years in a new PKI)
    expect(cert.notAfter.getTime()).toBe(Math.min(cert.notBefore.getTime() + 7300 * DAY, t.pki.local.cert.notAfter.getTime()));
    expect(cert.notAfter.getTime()).toBe(t.pki.local.cert.notAfter.getTime());
    expect(cert.extensions.get(OID.keyUsage)).toEqual({ critical: true, value: Buffer.from('03020780', 'hex') });
    expect(cert.extensions.get(OID.extKeyUsage)?.critical).toBe(true);
    expect(cert.extensions.get(OID.extKeyUsage)?.value.toString('hex')).toBe('300a06082b06010505070302');
    expect(cert.extensions.get(OID.authorityKeyIdentifier)?.value.subarray(4).equals(t.pki.local.cert.subjectKeyId!)).toBe(true);
    expect(cert.subjectKeyId).toHaveLength(20);
    expect(cert.isCa).toBe(false);
    const x = new X509Certificate(files['client.pem']);
    expect(x.verify(new X509Certificate(t.pki.local.certPem).publicKey)).toBe(true);

    const device = await t.store.getDevice(uuid);
    expect(device).toMatchObject({
      uuid,
      name: uuid,
      hardwareId: 'intel-corei7-64',
      production: true,
      serial: cert.serialHex,
      registrations: 1,
    });
    const [rec] = await t.store.certificatesOf(uuid);
    expect(rec).toMatchObject({
      serial: cert.serialHex,
      pem: files['client.pem'],
      clientAddress: '192.0.2.10',
      subject: `CN=${uuid}, OU=${FACTORY}, businessCategory=production`,
    });
  });

  it('ok/the 201 body is JSON.stringify of the four files, byte for byte, and Content-Length counts bytes', async () => {
    const { uuid, csrPem } = await deviceCsr({ production: false });
    // an override value JSON must escape (quotes), and non-ASCII (Content-Length counts bytes)
    const res = await t.request(lmpBody({ csr: csrPem, uuid, overrides: { pacman: { tags: '"main-\u00e9"' } } }));
    expect(res.status).toBe(201);
    const text = await res.text();
    const files = JSON.parse(text) as Record<string, string>;
    expect(text).toBe(JSON.stringify(files));
    expect(Object.keys(files)).toEqual(['root.crt', 'client.pem', 'client.chained', 'sota.toml']);
    expect(files['root.crt']).toBe(t.pki.rootPem);
    expect(files['client.chained']).toBe(files['client.pem'] + '\n' + t.pki.local.certPem);
    expect(files['sota.toml']).toContain('tags = "main-\u00e9"');
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(text)));
  });

  it('ok/serials are random, positive and 16 bytes', async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { uuid, csrPem } = await deviceCsr();
      const res = await t.request(lmpBody({ csr: csrPem, uuid }));
      const cert = parseCertificatePem(((await res.json()) as Record<string, string>)['client.pem']);
      expect(cert.serialHex).toHaveLength(32);
      expect(parseInt(cert.serialHex[0], 16)).toBeGreaterThanOrEqual(4);
      expect(cert.serialHex).not.toBe(uuid.replace(/-/g, ''));
      serials.add(cert.serialHex);
    }
    expect(serials.size).toBe(20);
  });

  it('ok/with --rekey allow (the reference), a new key gets a new certificate and the history is kept', async () => {
    const t = await makeTestApp({ rekey: 'allow' });
    const { uuid, csrPem } = await deviceCsr();
    const a = await t.request(lmpBody({ csr: csrPem, uuid }));
    const b = await t.request(lmpBody({ csr: (await deviceCsr({ uuid })).csrPem, uuid, name: 'renamed' }));
    expect([a.status, b.status]).toEqual([201, 201]);
    const history = await t.store.certificatesOf(uuid);
    expect(history).toHaveLength(2);
    expect(history[0].serial).not.toBe(history[1].serial);
    expect(await t.store.getDevice(uuid)).toMatchObject({ registrations: 2, name: 'renamed', serial: history[0].serial });
  });

  it('ok/name defaults to the UUID and a body without uuid/overrides is fine', async () => {
    const { uuid, csrPem } = await deviceCsr();
    const res = await t.request(JSON.stringify({ csr: csrPem, 'hardware-id': 'qemux86-64' }));
    expect(res.status).toBe(201);
    expect(await t.store.getDevice(uuid)).toMatchObject({ name: uuid, hardwareId: 'qemux86-64', production: false });
  });

  it('fail/denied UUID gets 403 with a plain-text reason and no new record', async () => {
    const { uuid, csrPem } = await deviceCsr();
    await t.store.deny([uuid], 'stolen', new Date());
    const res = await t.request(lmpBody({ csr: csrPem, uuid }));
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toBe(`device ${uuid} is on the deny-list\n`);
    expect(await t.store.certificatesOf(uuid)).toHaveLength(0);
  });

  it('ok/HEAD and GET /sign answer below 500; /healthz reports db and key', async () => {
    expect((await t.app.request('/sign', { method: 'HEAD' })).status).toBe(200);
    expect((await t.app.request('/sign')).status).toBe(200);
    const h = await t.app.request('/healthz');
    expect(h.status).toBe(200);
    expect(await h.json()).toEqual({ status: 'ok', db: 'ok', key: { backend: 'file', state: 'ready' } });
  });

  it('ok/one JSON log line per request, with id, uuid, serial, status, latency and no secrets', async () => {
    const { uuid, csrPem } = await deviceCsr();
    await t.request(lmpBody({ csr: csrPem, uuid }));
    const line = t.logLines().find((l) => l.uuid === uuid && l.status === 201)!;
    expect(line).toMatchObject({ event: 'request', method: 'POST', path: '/sign', status: 201, client: '192.0.2.10' });
    expect(line.request_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(line.serial).toMatch(/^[0-9a-f]{32}$/);
    expect(typeof line.latency_ms).toBe('number');
    // the two waits inside it: signing (thread pool) and recording (group commit)
    for (const stage of ['sign_ms', 'record_ms']) {
      expect(line[stage]).toBeGreaterThan(0);
      expect(line[stage]).toBeLessThanOrEqual(line.latency_ms as number);
    }
    expect((line.sign_ms as number) + (line.record_ms as number)).toBeLessThanOrEqual(line.latency_ms as number);
    expect(t.rawLogs()).not.toContain('BEGIN');
    expect(t.rawLogs()).not.toContain('OSF-TOKEN');
  });
});

describe('POST /sign refuses bad input with a 4xx, a one-line reason and no record', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeTestApp();
  });

  const rsa1024Csr = async (uuid: string): Promise<string> =>
    pem(
      'CERTIFICATE REQUEST',
      await createCsr({
        subject: deviceSubject(uuid, FACTORY, false),
        key: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey,
      }),
    );

  type Case = [
    name: string,
    build: (uuid: string, csr: string) => Promise<string> | string,
    status: number,
    reason: RegExp,
    contentType?: string | null,
  ];
  const cases: Case[] = [
    ['fail/not-json-content-type', (u, c) => lmpBody({ csr: c, uuid: u }), 415, /Content-Type: application\/json/, 'text/plain'],
    ['fail/no-content-type', (u, c) => lmpBody({ csr: c, uuid: u }), 415, /must be JSON/, null],
    ['fail/malformed-json', () => '{"csr": "x",', 400, /not valid JSON/],
    ['fail/json-array', () => '[1,2]', 400, /must be a JSON object/],
    ['fail/json-string', () => '"hello"', 400, /must be a JSON object/],
    ['fail/missing-csr', (u) => JSON.stringify({ 'hardware-id': 'x', uuid: u }), 400, /missing required field 'csr'/],
    ['fail/non-string-csr', (u) => JSON.stringify({ csr: 42, 'hardware-id': 'x', uuid: u }), 400, /'csr' must be a string/],
    ['fail/missing-hardware-id', (u, c) => JSON.stringify({ csr: c, uuid: u }), 400, /missing required field 'hardware-id'/],
    ['fail/non-string-hardware-id', (u, c) => JSON.stringify({ csr: c, uuid: u, 'hardware-id': 7 }), 400, /'hardware-id' must be a string/],
    ['fail/group-present', (u, c) => lmpBody({ csr: c, uuid: u, group: 'beta' }), 400, /'group' is not accepted/],
    [
      'fail/csr-does-not-parse',
      (u) => lmpBody({ csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', uuid: u }),
      400,
      /csr is not DER PKCS#10/,
    ],
    ['fail/csr-not-pem', (u) => lmpBody({ csr: 'hello', uuid: u }), 400, /csr is not one PEM certificate request/],
    [
      'fail/csr-bad-signature',
      (u, c) => {
        const der = Buffer.from(c.replace(/-----[^-]+-----|\s/g, ''), 'base64');
        der[der.length - 3] ^= 0x40;
        return lmpBody({ csr: pem('CERTIFICATE REQUEST', der), uuid: u });
      },
      400,
      /signature does not verify/,
    ],
    [
      'fail/missing-ou',
      async (u) =>
        lmpBody({
          csr: pem(
            'CERTIFICATE REQUEST',
            await createCsr({
              subject: [{ oid: OID.commonName, value: u }],
              key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
            }),
          ),
          uuid: u,
        }),
      400,
      /no OU/,
    ],
    [
      'fail/missing-cn',
      async (u) =>
        lmpBody({
          csr: pem(
            'CERTIFICATE REQUEST',
            await createCsr({
              subject: [{ oid: OID.organizationalUnit, value: FACTORY }],
              key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
            }),
          ),
          uuid: u,
        }),
      400,
      /no CN/,
    ],
    [
      'fail/wrong-ou',
      async (u) => lmpBody({ csr: (await deviceCsr({ uuid: u, factory: 'evil-corp' })).csrPem, uuid: u }),
      400,
      /not this factory/,
    ],
    [
      'fail/cn-not-uuid',
      async (u) => lmpBody({ csr: (await deviceCsr({ uuid: 'device-0001' })).csrPem, uuid: u }),
      400,
      /not a canonical UUID/,
    ],
    ['fail/uuid-field-differs', (_u, c) => lmpBody({ csr: c, uuid: randomUUID() }), 400, /'uuid' does not match/],
    ['fail/rsa-1024-key', async (u) => lmpBody({ csr: await rsa1024Csr(u), uuid: u }), 400, /RSA 1024 bits is not allowed/],
    [
      'fail/override-newline',
      (u, c) => lmpBody({ csr: c, uuid: u, overrides: { pacman: { tags: '"main"\n[tls]\nserver = "https://evil"' } } }),
      400,
      /newline or control character/,
    ],
    [
      'fail/override-control-char',
      (u, c) => lmpBody({ csr: c, uuid: u, overrides: { pacman: { tags: '"ma\u0007in"' } } }),
      400,
      /control character/,
    ],
    [
      'fail/override-bad-section',
      (u, c) => lmpBody({ csr: c, uuid: u, overrides: { 'pac]man': { tags: '"x"' } } }),
      400,
      /not a valid name/,
    ],
    [
      'fail/override-non-string',
      (u, c) => JSON.stringify({ csr: c, uuid: u, 'hardware-id': 'x', overrides: { pacman: { tags: 3 } } }),
      400,
      /must be a string/,
    ],
    ['fail/hardware-id-injection', (u, c) => lmpBody({ csr: c, uuid: u, hwid: 'x"\n[tls]' }), 400, /'hardware-id' contains/],
    ['fail/sota-config-dir-relative', (u, c) => lmpBody({ csr: c, uuid: u, 'sota-config-dir': 'var/sota' }), 400, /absolute path/],
    ['fail/body-over-64KiB', (u, c) => lmpBody({ csr: c, uuid: u, name: 'x'.repeat(70 * 1024) }), 413, /larger than 65536 bytes/],
  ];

  it.each(cases)('%s', async (_name, build, status, reason, contentType) => {
    const { uuid, csrPem } = await deviceCsr({ uuid: randomUUID() });
    const res = await t.request(await build(uuid, csrPem), { contentType });
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(reason);
    expect(text.trimEnd()).not.toContain('\n');
    expect(await registered(t, uuid)).toBe(0);
  });

  it('fail/chunked body over 64 KiB (no Content-Length): 413, nothing recorded', async () => {
    const { uuid, csrPem } = await deviceCsr({ uuid: randomUUID() });
    const big = Buffer.from(lmpBody({ csr: csrPem, uuid, name: 'x'.repeat(70 * 1024) }));
    const body = new ReadableStream({
      start(ctl) {
        for (let i = 0; i < big.length; i += 8192) ctl.enqueue(big.subarray(i, i + 8192));
        ctl.close();
      },
    });
    const res = await fetch(t.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(await res.text()).toBe('request body is larger than 65536 bytes\n');
    expect(await registered(t, uuid)).toBe(0);
  });

  it('fail/reject-reregistration: a known UUID gets 409 and keeps its one certificate', async () => {
    const r = await makeTestApp({ rejectReregistration: true });
    const { uuid, csrPem } = await deviceCsr();
    expect((await r.request(lmpBody({ csr: csrPem, uuid }))).status).toBe(201);
    const again = await r.request(lmpBody({ csr: (await deviceCsr({ uuid })).csrPem, uuid }));
    expect(again.status).toBe(409);
    expect(await again.text()).toMatch(/already registered/);
    expect(await r.store.certificatesOf(uuid)).toHaveLength(1);
  });

  it('never answers 500 to mangled bodies', async () => {
    const { uuid, csrPem } = await deviceCsr();
    const good = lmpBody({ csr: csrPem, uuid });
    let seed = 12345;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const statuses = new Set<number>();
    for (let i = 0; i < 300; i++) {
      const chars = good.split('');
      const mode = i % 3;
      if (mode === 0) chars.length = rnd(chars.length);
      else for (let k = 0; k < 1 + rnd(4); k++) chars[rnd(chars.length)] = String.fromCharCode(rnd(128));
      const res = await t.request(mode === 2 ? chars.join('').replace('"csr"', '"csr2"') : chars.join(''));
      statuses.add(res.status);
      expect(res.status, `mutation ${i}`).toBeLessThan(500);
    }
    expect([...statuses].some((s) => s >= 400)).toBe(true);
  });
});

describe('POST /sign options', () => {
  it('ok/serial-from-uuid uses the UUID as serial, as the reference does', async () => {
    const t = await makeTestApp({ serialFromUuid: true, rekey: 'allow' });
    const uuid = 'f0e1d2c3-b4a5-4697-8899-aabbccddeeff';
    const first = await deviceCsr({ uuid });
    const res = await t.request(lmpBody({ csr: first.csrPem, uuid }));
    const pem = ((await res.json()) as Record<string, string>)['client.pem'];
    const cert = parseCertificatePem(pem);
    expect(cert.serialHex).toBe(uuid.replace(/-/g, ''));
    // a retry with the same key is answered with that certificate, not refused
    const retry = await t.request(lmpBody({ csr: first.csrPem, uuid }));
    expect(retry.status).toBe(201);
    expect(((await retry.json()) as Record<string, string>)['client.pem']).toBe(pem);
    // a new key would need the same serial again
    const again = await t.request(lmpBody({ csr: (await deviceCsr({ uuid })).csrPem, uuid }));
    expect(again.status).toBe(409);
    expect(await again.text()).toMatch(/serial .* already used/);
  });

  it('ok/validity is configurable', async () => {
    const t = await makeTestApp({ validityDays: 30 });
    const { uuid, csrPem } = await deviceCsr();
    const cert = parseCertificatePem(
      ((await (await t.request(lmpBody({ csr: csrPem, uuid }))).json()) as Record<string, string>)['client.pem'],
    );
    expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBe(30 * DAY);
  });
});
