// `kilnctl admin-tokens …` (on the registry: whoever can write it may issue API tokens)
// and `kilnctl audit list` (on the registry or, with --server, over the admin API).
import type { Command } from 'commander';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileError } from '../pki/errors.js';
import { ADMIN_TOKEN_PREFIX } from '../server/admin/api.js';
import type { AdminRole, AdminToken, Store } from '../server/db/store.js';
import { localActor, withAdmin, withStore, type SiteOpts } from './shared/db.js';
import { appendAudit } from '../server/admin/service.js';
import { printResult, table } from './shared/output.js';
import { usage } from './shared/run.js';
import { siteOptions } from './shared/site-options.js';
import { checkName } from './pki-commands.js';

type Opts = SiteOpts & { json?: boolean };

const shown = ({ tokenSha256: _hash, ...t }: AdminToken) => t;

const ROLES: readonly AdminRole[] = ['viewer', 'operator', 'admin'];

export function addAdminCommands(program: Command, env: NodeJS.ProcessEnv): void {
  const tokens = program.command('admin-tokens').description('bearer tokens of the admin API (--admin-listen), by role');
  const cmd = (parent: Command, name: string, description: string): Command =>
    siteOptions(parent.command(name).description(description)).option('--json', 'print the result as JSON on stdout');
  const audit = (store: Store, action: string, target: string, detail = {}): Promise<void> =>
    appendAudit(store, localActor(), new Date(), action, target, detail);

  cmd(
    tokens,
    'create',
    'create a token and print it once (viewer: read; operator: devices, approvals, outbox; admin: also lots and the audit log)',
  )
    .argument('<name>')
    .requiredOption('--role <role>', 'viewer, operator or admin')
    .option('--token-out <file>', 'write the token to this new file (0600) instead of printing it')
    .action((name: string, o: Opts & { role: string; tokenOut?: string }) =>
      withStore(o, env, async (s) => {
        checkName('name', name);
        if (!(ROLES as readonly string[]).includes(o.role)) throw usage(`--role ${o.role}: expected ${ROLES.join(', ')}`);
        const token = ADMIN_TOKEN_PREFIX + randomBytes(32).toString('base64url');
        const t = await s.createAdminToken({
          name,
          role: o.role as AdminRole,
          tokenSha256: createHash('sha256').update(token, 'utf8').digest('hex'),
          createdAt: new Date(),
        });
        await audit(s, 'admin-tokens.create', name, { role: o.role });
        if (o.tokenOut) {
          try {
            writeFileSync(o.tokenOut, token + '\n', { mode: 0o600, flag: 'wx' });
          } catch (err) {
            throw fileError('create', o.tokenOut, err);
          }
        }
        printResult(!!o.json, { ...shown(t), token: o.tokenOut ? undefined : token, tokenFile: o.tokenOut }, () =>
          o.tokenOut
            ? `Created admin token ${name} (${o.role}) in ${o.tokenOut} (mode 0600)\n`
            : `Created admin token ${name} (${o.role}), shown this once (only a hash is kept):\n\n  ${token}\n\nUse it from a file: kilnctl … --server URL --token-file F, or Authorization: Bearer.\n`,
        );
      }),
    );

  cmd(tokens, 'list', 'the tokens (never their values)').action((o: Opts) =>
    withStore(o, env, async (s) => {
      const rows = (await s.listAdminTokens()).map(shown);
      printResult(!!o.json, rows, () =>
        table(rows, [
          ['name', 'NAME'],
          ['role', 'ROLE'],
          ['createdAt', 'CREATED'],
          ['revokedAt', 'REVOKED'],
        ]),
      );
    }),
  );

  cmd(tokens, 'revoke', 'revoke a token: the API answers it 401 at once')
    .argument('<name>')
    .action((name: string, o: Opts) =>
      withStore(o, env, async (s) => {
        const t = shown(await s.revokeAdminToken(name, new Date()));
        await audit(s, 'admin-tokens.revoke', name);
        printResult(!!o.json, t, () => `Revoked admin token ${name}\n`);
      }),
    );

  const auditCmd = program.command('audit').description('the audit log: every change, by whom, from where');
  cmd(auditCmd, 'list', 'newest first')
    .option('--limit <n>', 'at most this many (default 100)', '100')
    .option('--offset <n>', 'skip this many', '0')
    .action((o: Opts & { limit: string; offset: string }) =>
      withAdmin(o, env, async (api) => {
        const limit = Number(o.limit);
        const offset = Number(o.offset);
        if (!Number.isInteger(limit) || limit < 1 || !Number.isInteger(offset) || offset < 0)
          throw usage('--limit >= 1 and --offset >= 0, whole numbers');
        const rows = await api.listAudit({ limit, offset });
        printResult(!!o.json, rows, () =>
          table(rows, [
            ['at', 'TIME'],
            ['actor', 'ACTOR'],
            ['action', 'ACTION'],
            ['target', 'TARGET'],
            ['address', 'FROM'],
            ['detail', 'DETAIL'],
          ]),
        );
      }),
    );
}
