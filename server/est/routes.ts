// EST (RFC 7030) beside /sign: one registry, one policy, one CA.
//   GET  /.well-known/est[/<lot>]/cacerts          the chain, certs-only PKCS#7
//   GET  /.well-known/est[/<lot>]/csrattrs         what a device CSR must be
//   POST /.well-known/est[/<lot>]/simpleenroll     first enrollment: a lot's token as the
//        HTTP Basic password, or a bootstrap CA's client certificate; the same gate as /sign
//   POST /.well-known/est[/<lot>]/simplereenroll   renewal: the device's current, unrevoked
//        certificate as the TLS client certificate; the same subject, a new key allowed
// Errors are one line of text with the RFC's status (401 with WWW-Authenticate, 202 with
// Retry-After while an operator has not approved the device).
import type { HttpBindings } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { X509Certificate } from 'node:crypto';
import { parseCertificate, pemCertificates } from '../../pki/certificate.js';
import { parseCsr } from '../../pki/csr.js';
import { KilnError } from '../../pki/errors.js';
import { certsOnlyPkcs7 } from '../../pki/pkcs7-build.js';
import type { Ca } from '../../pki/ca.js';
import type { Store } from '../db/store.js';
import type { SignService, SignTrace } from '../sign-service.js';
import { basicPassword, checkValidity, clientCertificate, issuedBy } from './client-auth.js';
import { csrAttrs, CSRATTRS_TYPE, decodeBase64Body, PKCS10_TYPE, PKCS7_TYPE } from './wire.js';

export interface EstDeps {
  signService: SignService;
  store: Store;
  /** the CA that signs device certificates */
  ca: Ca;
  rootPem: string;
  /** CAs whose client certificates may simpleenroll (into the lot the URL names) */
  bootstrapCas: X509Certificate[];
  clock: () => Date;
  /** The header carrying the device's token on /sign; accepted here too. */
  authHeader: string;
  clientAddress: (c: Context<EstEnv>) => string;
}

export type EstEnv = { Bindings: HttpBindings; Variables: { requestId: string; trace: SignTrace } };

export const EST_PREFIX = '/.well-known/est';

/** A manual lot's device asks again after this many seconds (RFC 7030 §4.2.3). */
export const RETRY_AFTER_SECONDS = 30;

const MAX_CSR_BYTES = 64 * 1024;

const LOT_LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function createEstRoutes(deps: EstDeps): Hono<EstEnv> {
  const est = new Hono<EstEnv>();
  const caX509 = new X509Certificate(deps.ca.cert.der);

  const labelOf = (c: Context<EstEnv>): string | undefined => {
    const label = c.req.param('label');
    if (label !== undefined && !LOT_LABEL.test(label)) throw new KilnError('not_found', `no EST label ${label.slice(0, 64)}`);
    return label;
  };

  const readCsr = async (c: Context<EstEnv>) => {
    if (!PKCS10_TYPE.test(c.req.header('content-type') ?? ''))
      throw new KilnError('unsupported_media_type', 'an EST request body must be application/pkcs10 (base64 DER)');
    if (Number(c.req.header('content-length') ?? 0) > MAX_CSR_BYTES)
      throw new KilnError('too_large', `request body is larger than ${MAX_CSR_BYTES} bytes`);
    const body = await c.req.text();
    if (body.length > MAX_CSR_BYTES) throw new KilnError('too_large', `request body is larger than ${MAX_CSR_BYTES} bytes`);
    return parseCsr(decodeBase64Body(body, 'the PKCS#10 request'));
  };

  const meta = (c: Context<EstEnv>, token?: string) => ({ requestId: c.get('requestId'), clientAddress: deps.clientAddress(c), token });

  /** An EST answer: DER, sent base64 (RFC 7030 §4). */
  const base64Answer = (c: Context<EstEnv>, type: string, der: Uint8Array): Response => {
    c.header('Content-Type', type);
    c.header('Content-Transfer-Encoding', 'base64');
    return c.body(Buffer.from(der).toString('base64'));
  };
  const certificateAnswer = (c: Context<EstEnv>, pem: string): Response =>
    base64Answer(c, PKCS7_TYPE, certsOnlyPkcs7(pemCertificates(pem)));
  // the same for every request: made once
  const cacerts = certsOnlyPkcs7([deps.ca.cert.der, ...pemCertificates(deps.rootPem)]);
  const attrs = csrAttrs();

  for (const prefix of [EST_PREFIX, `${EST_PREFIX}/:label`]) {
    est.get(`${prefix}/cacerts`, (c) => {
      labelOf(c);
      return base64Answer(c, PKCS7_TYPE, cacerts);
    });

    est.get(`${prefix}/csrattrs`, (c) => {
      labelOf(c);
      return base64Answer(c, CSRATTRS_TYPE, attrs);
    });

    est.post(`${prefix}/simpleenroll`, async (c) => {
      const lotLabel = labelOf(c);
      const token = basicPassword(c.req.header('authorization')) ?? c.req.header(deps.authHeader);
      const peer = clientCertificate(c.env?.incoming);
      // a bootstrap certificate counts only when one of the configured CAs issued it and it is in date
      let bootstrap = false;
      if (peer && deps.bootstrapCas.some((ca) => issuedBy(peer, ca))) {
        checkValidity(parseCertificate(peer.raw), deps.clock(), 'the bootstrap certificate');
        bootstrap = true;
      }
      const csr = await readCsr(c);
      const pem = await deps.signService.issue({ csr, hardwareId: '', lotLabel, bootstrap }, meta(c, token), c.get('trace'));
      return certificateAnswer(c, pem);
    });

    est.post(`${prefix}/simplereenroll`, async (c) => {
      labelOf(c);
      const peer = clientCertificate(c.env?.incoming);
      if (!peer)
        throw new KilnError('unauthorized', "simplereenroll needs the device's current certificate as the TLS client certificate (HTTPS)");
      if (!issuedBy(peer, caX509)) throw new KilnError('denied', "the client certificate was not issued by this factory's CA");
      const current = parseCertificate(peer.raw);
      const trace = c.get('trace');
      checkValidity(current, deps.clock(), `certificate ${current.serialHex}`);
      const stored = await deps.store.certificate(current.serialHex);
      if (!stored) throw new KilnError('denied', `certificate ${current.serialHex} is not in the registry`);
      trace.uuid = stored.uuid;
      if (stored.revokedAt)
        throw new KilnError(
          'denied',
          `certificate ${current.serialHex} was revoked (${stored.revocationReason}) at ${stored.revokedAt.toISOString()}`,
        );
      const csr = await readCsr(c);
      // RFC 7030 §4.2.2: the same subject as the certificate being renewed
      if (!csr.subjectDer.equals(current.subjectDer))
        throw new KilnError('bad_csr', `the CSR's subject must be the certificate's own (${stored.subject})`);
      const device = await deps.store.getDevice(stored.uuid);
      if (!device) throw new KilnError('denied', `device ${stored.uuid} is not registered`);
      const pem = await deps.signService.issue(
        { csr, hardwareId: device.hardwareId, name: device.name, renews: { serial: current.serialHex } },
        meta(c),
        trace,
      );
      return certificateAnswer(c, pem);
    });
  }
  return est;
}

/** The headers RFC 7030 asks for on a refusal: how to authenticate, when to ask again. */
export function estErrorHeaders(c: Context, e: KilnError): void {
  if (e.code === 'unauthorized') c.header('WWW-Authenticate', 'Basic realm="kiln-est", charset="UTF-8"');
  if (e.code === 'pending') c.header('Retry-After', String(RETRY_AFTER_SECONDS));
}
