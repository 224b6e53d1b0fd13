// `kilnctl pki init` and `kilnctl pki show`
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createFactoryPki, PKI_FILES, type PkiFile } from '../pki/factory-pki.js';
import { generatePkcs11Key } from '../pki/pkcs11/open.js';
import { isPkcs11Uri } from '../pki/pkcs11/uri.js';
import type { Signer } from '../pki/signer.js';
import { formatName } from '../pki/name.js';
import { assertNoPki, readFactoryCerts, writeFactoryPki } from '../server/pki-dir.js';
import type { ParsedCertificate } from '../pki/certificate.js';
import { printResult } from './shared/output.js';
import { usage } from './shared/run.js';

const HOST_RE = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function checkName(flag: string, v: string): string {
  if (!v || /[\u0000-\u001f\u007f]/.test(v) || v.length > 64) throw usage(`${flag} must be 1-64 printable characters`);
  return v;
}

function checkHost(flag: string, v: string): string {
  if (!HOST_RE.test(v)) throw usage(`${flag} ${v}: not a DNS host name`);
  return v;
}

export function addPkiCommands(program: Command): void {
  const pki = program.command('pki').description('create or inspect the factory PKI');

  pki
    .command('init')
    .description('create a factory root CA, local CA and gateway TLS certificate (fioctl layout)')
    .requiredOption('--dir <dir>', 'directory to create the PKI in')
    .requiredOption('--factory <name>', 'factory name (the OU of every certificate)')
    .requiredOption('--gateway-dns <host>', 'DNS name of the device gateway (first SAN of tls-crt)')
    .option('--ostree-dns <host>', 'DNS name of the OSTree server (second SAN of tls-crt)')
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
        owner?: string;
        caKey?: string;
        rootKey?: string;
        json?: boolean;
      }) => {
        const factory = checkName('--factory', o.factory);
        const dnsNames = [checkHost('--gateway-dns', o.gatewayDns), ...(o.ostreeDns ? [checkHost('--ostree-dns', o.ostreeDns)] : [])];
        const owner = checkName('--owner', o.owner ?? factory);
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
          files = await createFactoryPki({ factory, owner, dnsNames, now: new Date(), rootSigner, localSigner });
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
        process.stderr.write(`Keep ${PKI_FILES.rootKey} offline: the server needs only ${PKI_FILES.localKey}.\n`);
      },
    );

  pki
    .command('show')
    .description('print the factory, subjects, expiry and SANs of a PKI directory')
    .requiredOption('--dir <dir>', 'PKI directory')
    .option('--json', 'print the result as JSON')
    .action((o: { dir: string; json?: boolean }) => {
      const p = readFactoryCerts(o.dir);
      const certs = [
        [PKI_FILES.rootCert, p.root],
        [PKI_FILES.localCert, p.local],
        ...(p.tls ? [[PKI_FILES.tlsCert, p.tls] as const] : []),
      ] as const;
      const keys = [PKI_FILES.rootKey, PKI_FILES.localKey, PKI_FILES.tlsKey].map((name) => {
        const path = join(o.dir, name);
        return {
          file: name,
          present: existsSync(path),
          mode: existsSync(path) ? (statSync(path).mode & 0o777).toString(8).padStart(4, '0') : null,
        };
      });
      const info = { dir: o.dir, factory: p.factory, certificates: certs.map(([f, c]) => describe(f, c)), keys };
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
  keys: { file: string; present: boolean; mode: string | null }[];
}): string {
  const lines = [`Factory: ${info.factory}`, `Directory: ${info.dir}`, ''];
  for (const c of info.certificates) {
    lines.push(`${c.file}`, `  subject:  ${c.subject}`, `  issuer:   ${c.issuer}`, `  expires:  ${c.notAfter}`);
    if (c.ca) lines.push('  CA:       yes');
    if (c.dnsNames.length) lines.push(`  DNS SANs: ${c.dnsNames.join(', ')}`);
  }
  lines.push('', 'Keys:');
  for (const k of info.keys) lines.push(`  ${k.file}: ${k.present ? `present, mode ${k.mode}` : 'not here'}`);
  return lines.join('\n') + '\n';
}
