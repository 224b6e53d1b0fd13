// The signing pipeline behind POST /sign: validate → apply the device profile →
// verify the CSR's signature and sign → record durably → build the device's files.
import type { Ca } from '../pki/ca.js';
import { certificatePem, signCertificateForCsr } from '../pki/certificate.js';
import { parseCsrPem, type EcVerifier, type ParsedCsr } from '../pki/csr.js';
import { KilnError } from '../pki/errors.js';
import { formatName } from '../pki/name.js';
import { checkDevicePolicy, type DevicePolicy } from '../pki/policy.js';
import { deviceTemplate } from '../pki/profiles.js';
import { randomSerial, serialHex, uuidSerial, type RandomSource } from '../pki/serial.js';
import { createHash } from 'node:crypto';
import type { IssuedCertificate, Repeat, Store } from './db/store.js';
import type { EnrollmentGate } from './enrollment.js';
import { parseSignRequest } from './sign-request.js';
import { renderSotaToml } from './sota-toml.js';

export interface SignSettings {
  gateway: string;
  ostree: string;
  validityDays: number;
  serialFromUuid: boolean;
  rejectReregistration: boolean;
  /** A registered UUID with a new key: 'deny' (409 unless an operator allowed one) or 'allow' (the reference's behaviour). */
  rekey: 'deny' | 'allow';
  /** The CRL's URL, put into new device certificates (cRLDistributionPoints). */
  crlUrl?: string;
}

/** Partially detached: how devices reach the upstream device API. */
export interface UpstreamHook {
  mode: 'sync' | 'outbox';
  group?: string;
  /** sync: deliver while the device waits (throws to refuse the registration) */
  deliverNow(entry: { serial: string; uuid: string; body: string }): Promise<void>;
  /** outbox: a delivery was queued */
  queued(): void;
}

export interface SignServiceDeps {
  upstream?: UpstreamHook;
  ca: Ca;
  rootPem: string;
  store: Store;
  policy: DevicePolicy;
  settings: SignSettings;
  clock: () => Date;
  random: RandomSource;
  /** Verifies EC CSR signatures from the bare point (native); node:crypto without it. */
  ecVerifier?: EcVerifier;
  /** Who may register (token mode); absent: open, as the reference. */
  enrollment?: EnrollmentGate;
}

export interface SignMeta {
  requestId: string;
  clientAddress: string;
  /** The auth header's value (OSF-TOKEN): the enrollment token in token mode. Never logged. */
  token?: string;
}

/** Filled in as the pipeline learns things, so the request log can say them even on failure. */
export interface SignTrace {
  uuid?: string;
  serial?: string;
  /** The public reason of a refusal, and its error code. */
  reason?: string;
  code?: string;
  /** ms spent verifying the CSR and signing (thread-pool or HSM wait included) */
  signMs?: number;
  /** ms spent recording in the registry (the group commit's wait included) */
  recordMs?: number;
  /** A retry answered with the device's current certificate. */
  repeat?: boolean;
}

/** Registry failures are the server's, not the device's: 503, worth a retry. */
async function registry<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof KilnError) throw err;
    throw new KilnError('unavailable', 'device registry is unavailable; try again', { cause: err });
  }
}

/** The upstream PUT body: the certificate, the device's name when it gave one, the configured group. */
const upstreamBody = (pem: string, name: string | undefined, group: string | undefined): string =>
  JSON.stringify({ 'client.pem': pem, ...(name ? { name } : {}), ...(group ? { group } : {}) });

export type DeviceFiles = Record<'root.crt' | 'client.pem' | 'client.chained' | 'sota.toml', string>;

/** One certificate request, whichever route it came by (/sign's JSON, EST's PKCS#10). */
export interface IssueRequest {
  csr: ParsedCsr;
  hardwareId: string;
  /** the device's name; its UUID when absent */
  name?: string;
  /** a UUID the request states besides the CSR's CN: must be the same */
  uuid?: string;
  /** EST: the lot named in the URL (/.well-known/est/<lot>/) */
  lotLabel?: string;
  /** EST: the client authenticated with a bootstrap CA's certificate */
  bootstrap?: boolean;
  /**
   * Renewal (EST simplereenroll): the device's current certificate, which authenticated
   * the request. The enrollment gate is not asked again: the device was admitted once.
   */
  renews?: { serial: string };
}

export interface SignService {
  /** POST /sign: the JSON request in, the device's files out. */
  sign(body: string, meta: SignMeta, trace?: SignTrace): Promise<DeviceFiles>;
  /** Checks, signs and records one request; resolves the device's certificate (PEM). */
  issue(req: IssueRequest, meta: SignMeta, trace?: SignTrace): Promise<string>;
}

export function createSignService(deps: SignServiceDeps): SignService {
  const { ca, store, policy, settings } = deps;
  const chainTail = '\n' + ca.certPem;

  async function issue(req: IssueRequest, meta: SignMeta, trace: SignTrace = {}): Promise<string> {
    const csr = req.csr;
    // the CSR's signature is verified below, in the job that signs the certificate
    const id = checkDevicePolicy(csr, policy);
    trace.uuid = id.uuid;
    if (req.uuid !== undefined && req.uuid.toLowerCase() !== id.uuid) {
      throw new KilnError('bad_request', "field 'uuid' does not match the CSR's CN");
    }
    const name = req.name ?? id.uuid;
    // the deny-list is checked where it counts: in the transaction that records the certificate (403 from there)
    const keySha256 = createHash('sha256').update(csr.spkiDer).digest('hex');
    const admission =
      deps.enrollment && !req.renews
        ? await deps.enrollment.admit(
            {
              token: meta.token,
              uuid: id.uuid,
              keySha256,
              hardwareId: req.hardwareId,
              name,
              production: id.production,
              clientAddress: meta.clientAddress,
              lotLabel: req.lotLabel,
              bootstrap: req.bootstrap,
            },
            deps.clock(),
          )
        : undefined;
    const group = admission?.group ?? deps.upstream?.group;

    const serial = settings.serialFromUuid ? uuidSerial(id.uuid) : randomSerial(deps.random);
    const template = deviceTemplate({
      ca,
      csr,
      serial,
      notBefore: deps.clock(),
      validityDays: settings.validityDays,
      crlUrl: settings.crlUrl,
    });
    const signStarted = performance.now();
    const pem = certificatePem(await signCertificateForCsr(template, ca.signer, csr, deps.ecVerifier));
    trace.signMs = performance.now() - signStarted;
    trace.serial = serialHex(serial);

    const record: IssuedCertificate = {
      serial: trace.serial,
      uuid: id.uuid,
      subject: formatName(csr.subject),
      hardwareId: req.hardwareId,
      name,
      production: id.production,
      notBefore: template.notBefore,
      notAfter: template.notAfter,
      pem,
      issuedAt: deps.clock(),
      clientAddress: meta.clientAddress,
      requestId: meta.requestId,
      upstreamBody: deps.upstream ? upstreamBody(pem, req.name, group) : undefined,
      keySha256,
      lot: admission?.lot,
      renews: req.renews?.serial,
    };
    const recordStarted = performance.now();
    let repeat: Repeat | undefined;
    try {
      repeat = await registry(() =>
        store.recordIssuance(record, { rejectReregistration: settings.rejectReregistration, rekey: settings.rekey }),
      );
    } catch (err) {
      trace.serial = undefined; // refused (deny-list, re-registration): this serial was never issued
      throw err;
    } finally {
      trace.recordMs = performance.now() - recordStarted;
    }
    const upstream = deps.upstream;
    if (repeat) {
      // a retry with the key of the device's current certificate (a lost 201): that
      // certificate again; the one just signed was never recorded and is dropped
      trace.serial = repeat.serial;
      trace.repeat = true;
      if (upstream?.mode === 'sync' && repeat.delivery !== null && repeat.delivery !== 'delivered')
        await registry(() =>
          upstream.deliverNow({ serial: repeat!.serial, uuid: id.uuid, body: upstreamBody(repeat!.pem, req.name, group) }),
        );
      return repeat.pem;
    }
    if (upstream?.mode === 'sync')
      await registry(() => upstream.deliverNow({ serial: record.serial, uuid: record.uuid, body: record.upstreamBody! }));
    else upstream?.queued();
    return pem;
  }

  return {
    issue,
    async sign(body, meta, trace = {}) {
      const req = parseSignRequest(body);
      const issued = await issue({ csr: parseCsrPem(req.csr), hardwareId: req.hardwareId, name: req.name, uuid: req.uuid }, meta, trace);
      return {
        'root.crt': deps.rootPem,
        'client.pem': issued,
        'client.chained': issued + chainTail,
        'sota.toml': renderSotaToml({
          gateway: settings.gateway,
          ostree: settings.ostree,
          hardwareId: req.hardwareId,
          sotaConfigDir: req.sotaConfigDir,
          overrides: req.overrides,
        }),
      };
    },
  };
}
