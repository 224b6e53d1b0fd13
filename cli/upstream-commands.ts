// `kilnctl upstream …`: the delivery outbox of partially detached mode, on the database.
import type { Command } from 'commander';
import { isCanonicalUuid } from '../pki/policy.js';
import { DEFAULTS, SETTINGS } from '../server/config.js';
import type { OutboxEntry } from '../server/db/store.js';
import { withStore } from './shared/db.js';
import { printResult, table } from './shared/output.js';
import { usage } from './shared/run.js';

const rowOf = ({ body: _body, ...e }: OutboxEntry) => e;

export function addUpstreamCommands(program: Command, env: NodeJS.ProcessEnv): void {
  const up = program.command('upstream').description('deliveries to the upstream device API (partially detached mode)');
  const cmd = (name: string, description: string): Command =>
    up
      .command(name)
      .description(description)
      .option('--db <url>', `registry database (default $${SETTINGS.db.env} or ${DEFAULTS.db})`)
      .option('--json', 'print the result as JSON on stdout');

  cmd('status', 'pending, failed and delivered counts, and the age of the oldest pending delivery').action(
    (o: { db?: string; json?: boolean }) =>
      withStore(o.db, env, async (s) => {
        const sum = await s.outboxSummary(new Date());
        printResult(
          !!o.json,
          sum,
          () =>
            `pending:   ${sum.pending}\nfailed:    ${sum.failed}\ndelivered: ${sum.delivered}\noldest pending: ${sum.oldestPendingAgeSeconds === null ? '-' : `${sum.oldestPendingAgeSeconds} s`}\n`,
        );
      }),
  );

  cmd('list', 'deliveries, newest first')
    .option('--failed', 'only failed deliveries')
    .option('--pending', 'only pending deliveries')
    .option('--limit <n>', 'at most this many (default 100)', '100')
    .action((o: { db?: string; json?: boolean; failed?: boolean; pending?: boolean; limit: string }) =>
      withStore(o.db, env, async (s) => {
        const limit = Number(o.limit);
        if (!Number.isInteger(limit) || limit < 1) throw usage('--limit must be a whole number >= 1');
        const rows = (await s.listOutbox({ status: o.failed ? 'failed' : o.pending ? 'pending' : undefined }, { limit, offset: 0 })).map(
          rowOf,
        );
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

  cmd('retry', 'make failed deliveries (or those of the given devices) due now; a running server picks them up')
    .argument('[uuid...]')
    .action((uuids: string[], o: { db?: string; json?: boolean }) =>
      withStore(o.db, env, async (s) => {
        for (const u of uuids) if (!isCanonicalUuid(u)) throw usage(`"${u}" is not a device UUID`);
        const n = await s.retryOutbox(uuids.length ? uuids.map((u) => u.toLowerCase()) : undefined, new Date());
        printResult(!!o.json, { requeued: n }, () => `Requeued ${n} deliveries\n`);
      }),
    );
}
