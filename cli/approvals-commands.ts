// `kilnctl approvals …`: devices of manual lots waiting for an operator.
import type { Command } from 'commander';
import { uuidsArg } from './shared/args.js';
import { withAdmin, type SiteOpts } from './shared/db.js';
import { printResult, table } from './shared/output.js';
import { usage } from './shared/run.js';
import { siteOptions } from './shared/site-options.js';

type Opts = SiteOpts & { json?: boolean };

export function addApprovalsCommands(program: Command, env: NodeJS.ProcessEnv): void {
  const ap = program.command('approvals').description('devices of manual lots that wait for an operator');
  const cmd = (name: string, description: string): Command =>
    siteOptions(ap.command(name).description(description)).option('--json', 'print the result as JSON on stdout');

  cmd('list', 'approval requests, most recently seen first (pending only unless --all)')
    .option('--all', 'also approved and rejected ones')
    .option('--limit <n>', 'at most this many (default 100)', '100')
    .action((o: Opts & { all?: boolean; limit: string }) =>
      withAdmin(o, env, async (api) => {
        const limit = Number(o.limit);
        if (!Number.isInteger(limit) || limit < 1) throw usage('--limit must be a whole number >= 1');
        const rows = await api.listApprovals({ all: !!o.all }, { limit, offset: 0 });
        printResult(!!o.json, rows, () =>
          table(
            rows.map((r) => ({ ...r, key: r.keySha256.slice(0, 16) })),
            [
              ['uuid', 'UUID'],
              ['status', 'STATUS'],
              ['lot', 'LOT'],
              ['hardwareId', 'HARDWARE ID'],
              ['name', 'NAME'],
              ['clientAddress', 'CLIENT'],
              ['key', 'KEY SHA-256'],
              ['attempts', 'ATTEMPTS'],
              ['lastSeen', 'LAST SEEN'],
            ],
          ),
        );
      }),
    );

  for (const [name, decision, verb, description] of [
    ['approve', 'approved', 'Approved', 'approve devices: their next request with the same key gets its certificate'],
    ['reject', 'rejected', 'Rejected and denied', 'reject devices: they are put on the deny-list'],
  ] as const) {
    cmd(name, description)
      .argument('<uuid...>')
      .action((uuids: string[], o: Opts) =>
        withAdmin(o, env, async (api) => {
          const rows = await api.decideApprovals(uuidsArg(uuids), decision);
          printResult(!!o.json, rows, () => `${verb} ${rows.map((r) => r.uuid).join(', ')}\n`);
        }),
      );
  }
}
