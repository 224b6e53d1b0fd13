// `kilnctl db backup|verify`: a consistent online copy of a live registry, and its check.
import type { Command } from 'commander';
import { KilnError } from '../pki/errors.js';
import { backupRegistry, verifyRegistry, type RegistryReport } from '../server/db/sqlite/backup.js';
import { siteConfig } from './shared/db.js';
import { parseDbUrl } from '../server/db/open.js';
import { copySqliteToPg } from '../server/db/pg/copy.js';
import { redactUrl } from '../server/db/pg/errors.js';
import { printResult } from './shared/output.js';
import { CONFIG_ENV, DEFAULTS, SETTINGS } from '../server/config.js';

const render = (r: RegistryReport, what: string): string =>
  [
    `${what} ${r.file}`,
    `  integrity:  ok`,
    `  schema:     ${r.migrations.applied} of ${r.migrations.known} migrations${r.migrations.applied === r.migrations.known ? '' : r.migrations.applied < r.migrations.known ? ' (older: the server migrates it when it opens it)' : ' (newer than this kilnctl)'}`,
    ...Object.entries(r.counts).map(([t, n]) => `  ${t.padEnd(16)}${n}`),
  ].join('\n') + '\n';

export function addDbCommands(program: Command, env: NodeJS.ProcessEnv): void {
  const db = program.command('db').description('the registry: online backup and verification (SQLite), moving to PostgreSQL');
  db.command('backup')
    .description('write a consistent copy of the live registry to FILE (the server keeps running; FILE must not exist)')
    .argument('<file>')
    .option('--config <file>', `JSON config file, as for kilnctl serve (default $${CONFIG_ENV})`)
    .option('--db <url>', `registry database (default $${SETTINGS.db.env}, the config file's, or ${DEFAULTS.db})`)
    .option('--json', 'print the report as JSON')
    .action((file: string, o: { config?: string; db?: string; json?: boolean }) => {
      const config = siteConfig({ config: o.config, db: o.db }, env);
      if (config.db.kind !== 'sqlite' || config.db.path === ':memory:')
        throw new KilnError(
          'usage',
          'db backup copies a SQLite registry file; back up PostgreSQL with its own tools (pg_dump, base backups)',
        );
      const report = backupRegistry(config.db.path, file);
      printResult(!!o.json, report, () => render(report, 'Backed up to'));
    });
  db.command('copy')
    .description('copy a whole SQLite registry into an empty PostgreSQL one (refuses a non-empty target); counts checked on both sides')
    .requiredOption('--from <url>', 'the SQLite registry, sqlite:PATH')
    .requiredOption('--to <url>', 'the PostgreSQL registry, postgres://USER@HOST/DATABASE (created tables, no rows)')
    .option('--json', 'print the report as JSON')
    .action(async (o: { from: string; to: string; json?: boolean }) => {
      const from = parseDbUrl(o.from, `--from ${o.from}`);
      const to = parseDbUrl(o.to, `--to ${redactUrl(o.to)}`);
      if (from.kind !== 'sqlite' || from.path === ':memory:')
        throw new KilnError('usage', '--from must be a SQLite registry file (sqlite:PATH)');
      if (to.kind !== 'postgres') throw new KilnError('usage', '--to must be a PostgreSQL registry (postgres://…)');
      const report = await copySqliteToPg(from.path, to.url);
      printResult(
        !!o.json,
        report,
        () =>
          [
            `Copied ${report.from} to ${report.to}`,
            ...Object.entries(report.counts).map(([t, n]) => `  ${t.padEnd(18)}${n}`),
            `  certificate serials: the same on both sides (sha256 ${report.serialsSha256.slice(0, 16)}…)`,
          ].join('\n') + '\n',
      );
    });
  db.command('verify')
    .description('check a registry file (a backup): integrity, schema, and what it holds')
    .argument('<file>')
    .option('--json', 'print the report as JSON')
    .action((file: string, o: { json?: boolean }) => {
      const report = verifyRegistry(file);
      printResult(!!o.json, report, () => render(report, 'Verified'));
    });
}
