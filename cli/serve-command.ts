// `kilnctl serve`
import type { Command } from 'commander';
import { CONFIG_ENV, parseServeConfig, SETTINGS } from '../server/config.js';
import { EXIT_CODES_HELP } from './shared/run.js';
import { batchedLines, createJsonLogger } from '../server/logger.js';
import { startServer } from '../server/main.js';

export function addServeCommand(program: Command, env: NodeJS.ProcessEnv): void {
  program
    .command('serve')
    .description('run the registration server (POST /sign)')
    .option('--config <file>', 'JSON config file (keys as in the configuration reference)')
    .option('--pki-dir <dir>', 'factory PKI directory (default ./data/pki)')
    .option('--ca-key <path>', 'local CA private key (default <pki-dir>/local-ca.key)')
    .option('--db <url>', 'registry database, sqlite:PATH (default sqlite:./data/kiln.db)')
    .option('--listen <host:port>', 'address to listen on (default 127.0.0.1:8000)')
    .option('--admin-listen <host:port|off>', 'the admin API (/api/v1/) listener (default 127.0.0.1:<listen port + 1>)')
    .option('--gateway <url>', 'device gateway URL for sota.toml (default https://<first DNS SAN of tls-crt>:8443)')
    .option('--ostree <url>', 'OSTree server URL for sota.toml (default https://<second DNS SAN of tls-crt>:8443)')
    .option('--validity-days <n>', 'device certificate validity in days (default 7300)')
    .option('--serial-from-uuid', 'use the device UUID as certificate serial, as the reference server does')
    .option('--reject-reregistration', 'answer 409 to a new certificate for a UUID that has one (a retry with its key still gets it)')
    .option(
      '--rekey <policy>',
      'a registered UUID with a new key: deny (default: 409 unless kilnctl devices allow-rekey) or allow (the reference)',
    )
    .option('--upstream-api <url>', 'partially detached: create each device here (PUT), e.g. https://api.foundries.io/ota/devices/')
    .option('--upstream-token-file <file>', 'file holding the upstream token (scope devices:create)')
    .option('--device-group <group>', 'upstream device group for new devices')
    .option('--upstream-mode <mode>', 'outbox (default: answer at once, deliver durably) or sync (the device waits)')
    .option('--upstream-retry-base-ms <ms>', 'first outbox retry delay; doubles per attempt with jitter, up to 5 min (default 1000)')
    .option('--enrollment <mode>', "who may register: open (default: any valid CSR, as the reference) or token (a production lot's token)")
    .option('--auth-header <name>', "the header carrying the device's token, as lmp-device-register -H (default OSF-TOKEN)")
    .option('--tls-cert <file>', 'serve HTTPS (TLS 1.2+) with this certificate chain (PEM), e.g. <pki-dir>/server.pem')
    .option('--tls-key <file>', 'and this key (PEM, 0600), e.g. <pki-dir>/server.key')
    .option('--crl-file <file>', 'also write the CRL (PEM) here, for gateways that read a file')
    .option('--crl-period-hours <n>', "the CRL's nextUpdate, hours after its thisUpdate (default 24); renewed at half")
    .option('--crl-url <url>', "the CRL's URL, put into new device certificates (cRLDistributionPoints)")
    .option('--est-bootstrap-ca <file>', "EST: TLS client certificates from these CAs (PEM) may simpleenroll into the URL's lot")
    .option('--metrics <bool>', 'Prometheus metrics at GET /metrics (default true)')
    .option('--max-in-flight <n>', '/sign requests served at once; past it 503 with Retry-After (default 1024; 0: no bound)')
    .option('--rate-limit <n>', '/sign requests per second per client address; past it 429 with Retry-After (default 0: off)')
    .option('--min-free-mb <n>', '/readyz fails with less free disk where the registry is (default 64)')
    .option('--ca-expiry-margin-days <n>', '/readyz fails when the local CA expires within this many days (default 30)')
    .option('--log-level <level>', 'error, warn or info (default info: a line per request)')
    .addHelpText('after', serveHelpFooter())
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const { config: configFile, ...flags } = opts;
      const config = parseServeConfig({ flags, env, configFile: configFile as string | undefined });
      const logger = createJsonLogger(
        batchedLines((chunk) => process.stdout.write(chunk)),
        config.logLevel,
      );
      const server = await startServer(config, logger);
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          logger.notice('stopping', { signal });
          void server.close().then(() => {
            // an upstream call in flight must not hold the process for its timeout
            setTimeout(() => process.exit(process.exitCode ?? 0), 100).unref();
            resolve();
          });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}

function serveHelpFooter(): string {
  const rows = Object.values(SETTINGS).map((st) => `  ${st.env.padEnd(28)} ${st.flag.padEnd(26)} "${st.key}"`);
  return `
Each setting comes from its flag, else its environment variable, else the JSON config file, else the default:
  ${'variable'.padEnd(28)} ${'flag'.padEnd(26)} config file key
  ${CONFIG_ENV.padEnd(28)} ${'--config'.padEnd(26)} (the file itself)
${rows.join('\n')}
Booleans take true/false, 1/0, yes/no, on/off. A bad value stops the server with one line and exit 78.
${EXIT_CODES_HELP}`;
}
