// `kilnctl lots …`: production lots and their enrollment tokens, on the registry.
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { fileError } from '../pki/errors.js';
import type { LotApproval, LotProduction } from '../server/db/store.js';
import { withAdmin, type SiteOpts } from './shared/db.js';
import type { LotView } from '../server/admin/service.js';
import { printResult, table } from './shared/output.js';
import { usage } from './shared/run.js';
import { siteOptions } from './shared/site-options.js';
import { checkName } from './pki-commands.js';

type Opts = SiteOpts & { json?: boolean };

const DURATION = /^(\d{1,6})([hdw])$/;

/** `--expires`: an ISO date/time, or a duration from now (`12h`, `30d`, `8w`). */
export function parseExpiry(v: string, now: Date): Date {
  const m = DURATION.exec(v);
  if (m) return new Date(now.getTime() + Number(m[1]) * { h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[2] as 'h' | 'd' | 'w']);
  const t = /^\d{4}-\d\d-\d\d(T[\d:.]+(Z|[+-]\d\d:\d\d)?)?$/.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(t)) throw usage(`--expires ${v}: expected an ISO date (2027-06-30, 2027-06-30T18:00Z) or a duration (12h, 30d, 8w)`);
  if (t <= now.getTime()) throw usage(`--expires ${v} is in the past`);
  return new Date(t);
}

function oneOf<T extends string>(flag: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) throw usage(`${flag} ${v}: expected ${allowed.join(', ')}`);
  return v as T;
}

/** Prints the token once: to stdout, or into a new 0600 file (`--token-out`) so it never reaches a terminal log. */
function handOut(token: string, lot: LotView, o: { tokenOut?: string; json?: boolean }, verb: string): void {
  if (o.tokenOut) {
    try {
      writeFileSync(o.tokenOut, token + '\n', { mode: 0o600, flag: 'wx' });
    } catch (err) {
      throw fileError('create', o.tokenOut, err);
    }
  }
  const token_ = o.tokenOut ? undefined : token;
  printResult(!!o.json, { ...lot, token: token_, tokenFile: o.tokenOut }, () =>
    o.tokenOut
      ? `${verb} lot ${lot.name}; its enrollment token is in ${o.tokenOut} (mode 0600), and is shown nowhere else.\n`
      : `${verb} lot ${lot.name}. Its enrollment token, shown this once (only a hash is kept):\n\n  ${token}\n\nGive it to the lot's devices as their API token (lmp-device-register -T, or /etc/lmp-device-register-token).\n`,
  );
}

export function addLotsCommands(program: Command, env: NodeJS.ProcessEnv): void {
  const lots = program.command('lots').description('production lots: who may enroll with which token (--enrollment token)');
  const cmd = (name: string, description: string): Command =>
    siteOptions(lots.command(name).description(description)).option('--json', 'print the result as JSON on stdout');

  cmd('create', 'create a lot and print its enrollment token once')
    .argument('<lot>')
    .option('--expires <when>', 'the token stops enrolling then: ISO date, or 12h, 30d, 8w from now')
    .option('--max-devices <n>', 'at most this many devices, exactly')
    .option('--hwid <pattern>', 'allowed hardware ids, a glob (* and ?), e.g. "imx8mm-*"')
    .option('--group <group>', "upstream device group for the lot's devices")
    .option('--production <p>', 'required, forbidden or any (default any)', 'any')
    .option('--approval <a>', 'auto (default), manual (an operator approves each device) or preauthorized (only listed devices)', 'auto')
    .option('--token-out <file>', 'write the token to this new file (0600) instead of printing it')
    .action(
      (
        name: string,
        o: Opts & {
          expires?: string;
          maxDevices?: string;
          hwid?: string;
          group?: string;
          production: string;
          approval: string;
          tokenOut?: string;
        },
      ) =>
        withAdmin(o, env, async (api) => {
          const now = new Date();
          checkName('lot', name);
          const max = o.maxDevices === undefined ? undefined : Number(o.maxDevices);
          if (max !== undefined && (!Number.isInteger(max) || max < 1 || max > 100_000_000))
            throw usage('--max-devices must be a whole number >= 1');
          if (o.hwid !== undefined && !/^[A-Za-z0-9._+*?-]{1,64}$/.test(o.hwid))
            throw usage(`--hwid ${o.hwid}: a glob of letters, digits, '.', '_', '+', '-', '*' and '?'`);
          if (o.group !== undefined) checkName('--group', o.group);
          const { lot, token } = await api.createLot({
            name,
            expiresAt: o.expires ? parseExpiry(o.expires, now) : undefined,
            maxDevices: max,
            hwidPattern: o.hwid,
            group: o.group,
            production: oneOf<LotProduction>('--production', o.production, ['required', 'forbidden', 'any']),
            approval: oneOf<LotApproval>('--approval', o.approval, ['auto', 'manual', 'preauthorized']),
          });
          handOut(token, lot, o, 'Created');
        }),
    );

  cmd('list', 'the lots, newest first').action((o: Opts) =>
    withAdmin(o, env, async (api) => {
      const rows = await api.listLots();
      printResult(!!o.json, rows, () =>
        table(
          rows.map((r) => ({
            ...r,
            devices: r.maxDevices === null ? String(r.admitted) : `${r.admitted}/${r.maxDevices}`,
            state: state(r),
          })),
          [
            ['name', 'LOT'],
            ['state', 'STATE'],
            ['devices', 'DEVICES'],
            ['approval', 'APPROVAL'],
            ['production', 'PRODUCTION'],
            ['hwidPattern', 'HARDWARE IDS'],
            ['expiresAt', 'EXPIRES'],
          ],
        ),
      );
    }),
  );

  cmd('show', 'one lot')
    .argument('<lot>')
    .action((name: string, o: Opts) =>
      withAdmin(o, env, async (api) => {
        const r = await api.showLot(name);
        printResult(!!o.json, r, () =>
          [
            `Lot:          ${r.name} (${state(r)})`,
            `Created:      ${r.createdAt.toISOString()}`,
            `Expires:      ${r.expiresAt?.toISOString() ?? 'never'}`,
            `Devices:      ${r.admitted}${r.maxDevices === null ? '' : ` of ${r.maxDevices}`}`,
            `Approval:     ${r.approval}`,
            `Production:   ${r.production}`,
            `Hardware ids: ${r.hwidPattern ?? 'any'}`,
            `Group:        ${r.deviceGroup ?? '-'}`,
            '',
          ].join('\n'),
        );
      }),
    );

  cmd('revoke', "stop a lot's token from enrolling devices (devices already enrolled keep their certificates)")
    .argument('<lot>')
    .action((name: string, o: Opts) =>
      withAdmin(o, env, async (api) => {
        const lot = await api.revokeLot(name);
        printResult(!!o.json, lot, () => `Revoked lot ${name}: its token no longer enrolls devices\n`);
      }),
    );

  cmd('rotate-token', 'give a lot a new token (the old one stops working) and print it once')
    .argument('<lot>')
    .option('--token-out <file>', 'write the token to this new file (0600) instead of printing it')
    .action((name: string, o: Opts & { tokenOut?: string }) =>
      withAdmin(o, env, async (api) => {
        const { lot, token } = await api.rotateLotToken(name);
        handOut(token, lot, o, 'Rotated the token of');
      }),
    );
}

function state(l: LotView): string {
  if (l.revokedAt) return 'revoked';
  if (l.expiresAt && l.expiresAt <= new Date()) return 'expired';
  if (l.maxDevices !== null && l.admitted >= l.maxDevices) return 'full';
  return 'open';
}
