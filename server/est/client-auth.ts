// Who is asking, for EST: HTTP Basic (the password is a lot's enrollment token) and
// the TLS client certificate, checked against this factory's CA (renewal) or a
// configured bootstrap CA (first enrollment of devices that carry a maker's identity).
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { KilnError } from '../../pki/errors.js';

/** The password of an `Authorization: Basic` header; undefined without one. */
export function basicPassword(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header);
  const decoded = m ? Buffer.from(m[1], 'base64').toString('utf8') : '';
  const colon = decoded.indexOf(':');
  if (colon < 0) throw new KilnError('unauthorized', 'the Authorization header is not HTTP Basic (user:password in base64)');
  return decoded.slice(colon + 1);
}

/** The TLS client certificate of a request, if it sent one. */
export function clientCertificate(req: IncomingMessage | undefined): X509Certificate | undefined {
  const socket = req?.socket as TLSSocket | undefined;
  if (!socket?.encrypted || typeof socket.getPeerCertificate !== 'function') return undefined;
  const peer = socket.getPeerCertificate();
  if (!peer?.raw?.length) return undefined;
  try {
    return new X509Certificate(peer.raw);
  } catch {
    return undefined;
  }
}

/** Issued (and signed) by this CA certificate. */
export const issuedBy = (cert: X509Certificate, ca: X509Certificate): boolean => cert.checkIssued(ca) && cert.verify(ca.publicKey);

/** Refuses a certificate outside its validity at `now`, naming the date. */
export function checkValidity(cert: { notBefore: Date; notAfter: Date }, now: Date, what: string): void {
  if (now > cert.notAfter) throw new KilnError('denied', `${what} expired at ${cert.notAfter.toISOString()}`);
  if (now < cert.notBefore) throw new KilnError('denied', `${what} is not valid before ${cert.notBefore.toISOString()}`);
}
