// `kilnctl upstream …`: the delivery outbox of partially detached mode, on the database.
import type { Command } from 'commander';
import { uuidsArg } from './shared/args.js';
import { withAdmin, type SiteOpts } from './shared/db.js';
import { printResult, table } from './shared/output.js';
import { usage } from './shared/run.js';
import { siteOptions } from './shared/site-options.js';

type Opts = SiteOpts & { json?: boolean };

export function addUpstreamCommands(program: Command, env: NodeJS.ProcessEnv): void {
  const up = program.command('upstream').description('deliveries to the upstream device API (partially detached mode)');
  const cmd = (name: string, description: string): Command =>
    siteOptions(up.command(name).description(description)).option('--json', 'print the result as JSON on stdout');

  cmd('status', 'pending, failed and delivered counts, the oldest pending delivery, and any pause').action((o: Opts) =>
    withAdmin(o, env, async (api) => {
      const sum = await api.upstreamStatus();
      printResult(!!o.json, sum, () => {
        const pause = sum.paused
          ? `paused:    until ${sum.paused.until.toISOString()} (since ${sum.paused.pausedAt.toISOString()}): ${sum.paused.reason}\n           the upstream refused the token; fix it, then: kilnctl upstream retry\n`
          : '';
        return `pending:   ${sum.pending}\nfailed:    ${sum.failed}\ndelivered: ${sum.delivered}\noldest pending: ${sum.oldestPendingAgeSeconds === null ? '-' : `${sum.oldestPendingAgeSeconds} s`}\n${pause}`;
      });
    }),
  );

  cmd('list', 'deliveries, newest first')
    .option('--failed', 'only failed deliveries')
    .option('--pending', 'only pending deliveries')
    .option('--limit <n>', 'at most this many (default 100)', '100')
    .action((o: Opts & { failed?: boolean; pending?: boolean; limit: string }) =>
      withAdmin(o, env, async (api) => {
        const limit = Number(o.limit);
        if (!Number.isInteger(limit) || limit < 1) throw usage('--limit must be a whole number >= 1');
        const rows = await api.listDeliveries({ status: o.failed ? 'failed' : o.pending ? 'pending' : undefined }, { limit, offset: 0 });
        printResult(!!o.json, rows, () =>
          table(rows, [
            ['uuid', 'UUID'],
            ['status', 'STATUS'],
            ['attempts', 'ATTEMPTS'],
            ['nextAttemptAt', 'NEXT ATTEMPT'],
            ['lastError', 'LAST ERROR'],
          ]),
        );
      }),
    );

  cmd(
    'retry',
    'lift a pause and make undelivered deliveries (all, or those of the given devices) due now; a running server sends them within a second',
  )
    .argument('[uuid...]')
    .action((uuids: string[], o: Opts) =>
      withAdmin(o, env, async (api) => {
        const ids = uuids.length ? uuidsArg(uuids) : undefined;
        const n = (await api.retryDeliveries(ids)).requeued;
        printResult(!!o.json, { requeued: n }, () => `Requeued ${n} deliveries; a running server sends them within a second\n`);
      }),
    );
}
