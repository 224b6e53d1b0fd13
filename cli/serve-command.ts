// `kilnctl serve`
import type { Command } from 'commander';
import { parseServeConfig } from '../server/config.js';
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
    .option('--gateway <url>', 'device gateway URL for sota.toml (default https://<first DNS SAN of tls-crt>:8443)')
    .option('--ostree <url>', 'OSTree server URL for sota.toml (default https://<second DNS SAN of tls-crt>:8443)')
    .option('--validity-days <n>', 'device certificate validity in days (default 7300)')
    .option('--serial-from-uuid', 'use the device UUID as certificate serial, as the reference server does')
    .option('--reject-reregistration', 'answer 409 to a UUID that already has a certificate')
    .option('--upstream-api <url>', 'partially detached: create each device here (PUT), e.g. https://api.foundries.io/ota/devices/')
    .option('--upstream-token-file <file>', 'file holding the upstream token (scope devices:create)')
    .option('--device-group <group>', 'upstream device group for new devices')
    .option('--upstream-mode <mode>', 'outbox (default: answer at once, deliver durably) or sync (the device waits)')
    .option('--upstream-retry-base-ms <ms>', 'first outbox retry delay; doubles per attempt with jitter, up to 5 min (default 1000)')
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const { config: configFile, ...flags } = opts;
      const config = parseServeConfig({ flags, env, configFile: configFile as string | undefined });
      const logger = createJsonLogger(batchedLines((chunk) => process.stdout.write(chunk)));
      const server = await startServer(config, logger);
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          logger.info('stopping', { signal });
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
