// `kilnctl pki init` and `kilnctl pki show`
import type { Command } from 'commander';
import { isIP } from 'node:net';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createFactoryPki, PKI_FILES, type PkiFile } from '../pki/factory-pki.js';
import { generatePkcs11Key } from '../pki/pkcs11/open.js';
import { isPkcs11Uri } from '../pki/pkcs11/uri.js';
import type { Signer } from '../pki/signer.js';
import { formatName } from '../pki/name.js';
import { caExpiryWarning } from '../pki/profiles.js';
import { assertNoPki, readFactoryCerts, writeFactoryPki } from '../server/pki-dir.js';
import type { ParsedCertificate } from '../pki/certificate.js';
import { CONFIG_ENV, DEFAULTS, SETTINGS } from '../server/config.js';
import { siteConfig } from './shared/db.js';
import { checkLotName } from '../server/admin/service.js';
import { printResult } from './shared/output.js';
import { usage } from './shared/run.js';

const HOST_RE = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Factory, owner, lot and group names: one rule (server/admin/service.ts). */
export const checkName = checkLotName;

/** The 16 bytes of an IPv6 address (`::` expanded). */
function ipv6Bytes(ip: string): Buffer {
  const [head, tail = ''] = ip.split('::');
  const parts = (s: string): string[] => (s ? s.split(':') : []);
  const h = parts(head);
  const t = ip.includes('::') ? parts(tail) : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

/** A pkcs11: URI without its query (which may carry a PIN), for display. */
const keyLocation = (uri: string): string => uri.split('?')[0];

function checkHost(flag: string, v: string): string {
  if (!HOST_RE.test(v)) throw usage(`${flag} ${v}: not a DNS host name`);
  return v;
}

export function addPkiCommands(program: Command, env: NodeJS.ProcessEnv): void {
  const pki = program.command('pki').description('create or inspect the factory PKI');

  pki
    .command('init')
    .description('create a factory root CA, local CA and gateway TLS certificate (fioctl layout)')
    .requiredOption('--dir <dir>', 'directory to create the PKI in')
    .requiredOption('--factory <name>', 'factory name (the OU of every certificate)')
    .requiredOption('--gateway-dns <host>', 'DNS name of the device gateway (first SAN of tls-crt)')
    .option('--ostree-dns <host>', 'DNS name of the OSTree server (second SAN of tls-crt)')
    .option('--server-dns <host...>', "also issue Kiln's own HTTPS certificate (server.pem/server.key) for these names")
    .option('--server-ip <ip...>', 'and these IP addresses (SANs of server.pem)')
    .option('--owner <id>', 'CN of the local CA (fioctl uses the owner id; default: the factory name)')
    .option('--ca-key <pkcs11-uri>', 'generate the local CA key inside this PKCS#11 token (RFC 7512 URI) instead of local-ca.key')
    .option('--root-key <pkcs11-uri>', 'generate the root CA key inside this PKCS#11 token instead of factory_ca.key')
    .option('--json', 'print the result as JSON')
    .action(
      async (o: {
        dir: string;
        factory: string;
        gatewayDns: string;
        ostreeDns?: string;
        serverDns?: string[];
        serverIp?: string[];
        owner?: string;
        caKey?: string;
        rootKey?: string;
        json?: boolean;
      }) => {
        const factory = checkName('--factory', o.factory);
        const dnsNames = [checkHost('--gateway-dns', o.gatewayDns), ...(o.ostreeDns ? [checkHost('--ostree-dns', o.ostreeDns)] : [])];
        const owner = checkName('--owner', o.owner ?? factory);
        const serverDns = (o.serverDns ?? []).map((h) => checkHost('--server-dns', h));
        const serverIps = (o.serverIp ?? []).map((ip) => {
          const v = isIP(ip);
          if (!v) throw usage(`--server-ip ${ip}: not an IP address`);
          return v === 4 ? Buffer.from(ip.split('.').map(Number)) : ipv6Bytes(ip);
        });
        for (const [flag, v] of [
          ['--ca-key', o.caKey],
          ['--root-key', o.rootKey],
        ] as const) {
          if (v !== undefined && !isPkcs11Uri(v)) throw usage(`${flag} must be a pkcs11: URI`);
        }
        assertNoPki(o.dir);
        const read = (p: string): string => readFileSync(p, 'utf8');
        const signers: Signer[] = [];
        let files: PkiFile[];
        try {
          const rootSigner = o.rootKey ? await generatePkcs11Key(o.rootKey, read) : undefined;
          if (rootSigner) signers.push(rootSigner);
          const localSigner = o.caKey ? await generatePkcs11Key(o.caKey, read) : undefined;
          if (localSigner) signers.push(localSigner);
          files = await createFactoryPki({
            factory,
            owner,
            dnsNames,
            now: new Date(),
            rootSigner,
            localSigner,
            server: { dnsNames: serverDns, ips: serverIps },
          });
        } finally {
          for (const s of signers) await s.close();
        }
        writeFactoryPki(o.dir, files);
        printResult(
          !!o.json,
          { dir: o.dir, factory, files: files.map((f) => f.name) },
          () =>
            `Created the ${factory} factory PKI in ${o.dir}:\n${files.map((f) => `  ${f.name}${f.mode === 0o600 ? ' (private key, 0600)' : ''}`).join('\n')}\n`,
        );
        const serverKey = o.caKey ? `the local CA key in ${keyLocation(o.caKey)}` : PKI_FILES.localKey;
        process.stderr.write(
          o.rootKey
            ? `The root CA key stays in ${keyLocation(o.rootKey)}; the server needs only ${serverKey}.\n`
            : `Keep ${PKI_FILES.rootKey} offline: the server needs only ${serverKey}.\n`,
        );
      },
    );

  pki
    .command('show')
    .description('print the factory, subjects, expiry and SANs of a PKI directory')
    .option('--dir <dir>', `PKI directory (default $${SETTINGS.pkiDir.env}, the config file's, or ${DEFAULTS.pkiDir})`)
    .option('--config <file>', `JSON config file, as for kilnctl serve (default $${CONFIG_ENV})`)
    .option('--json', 'print the result as JSON')
    .action((o: { dir?: string; config?: string; json?: boolean }) => {
      const site = siteConfig({ config: o.config, pkiDir: o.dir }, env);
      const dir = site.pkiDir;
      const p = readFactoryCerts(dir);
      const certs = [
        [PKI_FILES.rootCert, p.root],
        [PKI_FILES.localCert, p.local],
        ...(p.tls ? [[PKI_FILES.tlsCert, p.tls] as const] : []),
      ] as const;
      const hsmKey = isPkcs11Uri(site.caKey) ? keyLocation(site.caKey) : undefined;
      const keys = [PKI_FILES.rootKey, PKI_FILES.localKey, PKI_FILES.tlsKey].map((name) => {
        const path = join(dir, name);
        const present = existsSync(path);
        return {
          file: name,
          present,
          mode: present ? (statSync(path).mode & 0o777).toString(8).padStart(4, '0') : null,
          // where the server's CA key is when it is not a file here
          hsm: name === PKI_FILES.localKey && hsmKey ? hsmKey : null,
        };
      });
      const warning = caExpiryWarning(p.local.notAfter, site.validityDays, new Date());
      const info = {
        dir,
        factory: p.factory,
        certificates: certs.map(([f, c]) => describe(f, c)),
        keys,
        warnings: warning ? [warning] : [],
      };
      printResult(!!o.json, info, () => renderShow(info));
    });
}

function describe(file: string, c: ParsedCertificate) {
  return {
    file,
    subject: formatName(c.subject),
    issuer: formatName(c.issuer),
    serial: c.serialHex,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    ca: c.isCa,
    dnsNames: c.dnsNames,
  };
}

function renderShow(info: {
  dir: string;
  factory: string;
  certificates: ReturnType<typeof describe>[];
  keys: { file: string; present: boolean; mode: string | null; hsm: string | null }[];
  warnings: string[];
}): string {
  const lines = [`Factory: ${info.factory}`, `Directory: ${info.dir}`, ''];
  for (const c of info.certificates) {
    lines.push(`${c.file}`, `  subject:  ${c.subject}`, `  issuer:   ${c.issuer}`, `  expires:  ${c.notAfter}`);
    if (c.ca) lines.push('  CA:       yes');
    if (c.dnsNames.length) lines.push(`  DNS SANs: ${c.dnsNames.join(', ')}`);
  }
  lines.push('', 'Keys:');
  const absent: Record<string, string> = {
    [PKI_FILES.rootKey]: 'not in this directory (kept offline, or in an HSM)',
    [PKI_FILES.localKey]: 'not in this directory: kilnctl serve needs it, or --ca-key pkcs11:… for a key in an HSM',
    [PKI_FILES.tlsKey]: 'not in this directory (it belongs on the device gateway)',
  };
  for (const k of info.keys)
    lines.push(`  ${k.file}: ${k.hsm ? `in an HSM: ${k.hsm}` : k.present ? `present, mode ${k.mode}` : absent[k.file]}`);
  for (const w of info.warnings) lines.push('', `Warning: ${w}`);
  return lines.join('\n') + '\n';
}
