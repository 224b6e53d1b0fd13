// `kilnctl devices …`: the registry and the deny-list, on the database directly.
import type { Command } from 'commander';
import { uuidsArg } from './shared/args.js';
import { fileError, KilnError } from '../pki/errors.js';
import { readFileSync } from 'node:fs';
import { parsePreauthCsv } from './preauthorize-csv.js';
import { parseRevocationReason, REVOCATION_REASONS } from '../pki/crl.js';
import { DEFAULTS, SETTINGS, type ServeConfig } from '../server/config.js';
import { readFactoryCerts } from '../server/pki-dir.js';
import { createUpstreamClient, readUpstreamToken, type UpstreamClient } from '../server/upstream.js';
import { siteOptions } from './shared/site-options.js';
import { siteConfig, withAdmin, type SiteOpts } from './shared/db.js';
import { printResult, table } from './shared/output.js';
import { usage } from './shared/run.js';

interface UpstreamOpts {
  factory?: string;
}

interface DbOpts extends SiteOpts {
  json?: boolean;
}

function pageArg(o: { limit?: string; offset?: string }): { limit: number; offset: number } {
  const limit = Number(o.limit ?? 100);
  const offset = Number(o.offset ?? 0);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100000) throw usage('--limit must be a whole number from 1 to 100000');
  if (!Number.isInteger(offset) || offset < 0) throw usage('--offset must be a whole number >= 0');
  return { limit, offset };
}

export function addDevicesCommands(program: Command, env: NodeJS.ProcessEnv): void {
  const devices = program.command('devices').description('registered devices and the deny-list');

  const cmd = (name: string, description: string): Command =>
    siteOptions(devices.command(name).description(description)).option('--json', 'print the result as JSON on stdout');

  cmd('list', 'list registered devices, most recently registered first')
    .option('--limit <n>', 'at most this many (default 100)')
    .option('--offset <n>', 'skip this many')
    .action((o: DbOpts & { limit?: string; offset?: string }) =>
      withAdmin(o, env, async (api) => {
        const rows = await api.listDevices(pageArg(o));
        printResult(!!o.json, rows, () =>
          table(rows, [
            ['uuid', 'UUID'],
            ['name', 'NAME'],
            ['hardwareId', 'HARDWARE ID'],
            ['production', 'PRODUCTION'],
            ['lastRegisteredAt', 'LAST REGISTERED'],
            ['serial', 'SERIAL'],
          ]),
        );
      }),
    );

  cmd('show', 'show one device and its certificate history')
    .argument('<uuid>')
    .action((uuid: string, o: DbOpts) =>
      withAdmin(o, env, async (api) => {
        const [id] = uuidsArg([uuid]);
        const view = await api.showDevice(id);
        const { device, denied, rekeyAllowance: rekey, certificates } = view;
        const history = certificates.map(({ pem: _pem, ...c }) => c);
        printResult(!!o.json, view, () => {
          const head = device
            ? `UUID:        ${device.uuid}\nName:        ${device.name}\nHardware ID: ${device.hardwareId}\nProduction:  ${device.production}\nRegistered:  ${device.firstRegisteredAt.toISOString()} (first), ${device.lastRegisteredAt.toISOString()} (last), ${device.registrations} time(s)\nRetries:     ${device.repeats} answered with the current certificate\nSerial:      ${device.serial}\n`
            : `UUID:        ${id} (deleted)\n`;
          const deny = denied ? `Denied:      ${denied.deniedAt.toISOString()}${denied.reason ? ` (${denied.reason})` : ''}\n` : '';
          const allowed = rekey
            ? `Re-key:      allowed ${rekey.allowedAt.toISOString()}${rekey.reason ? ` (${rekey.reason})` : ''}, ${rekey.usedAt ? `used ${rekey.usedAt.toISOString()} for serial ${rekey.usedSerial}` : 'not used yet'}\n`
            : '';
          return `${head}${deny}${allowed}\nCertificates:\n${table(history, [
            ['serial', 'SERIAL'],
            ['issuedAt', 'ISSUED'],
            ['notAfter', 'EXPIRES'],
            ['clientAddress', 'CLIENT'],
            ['supersededBy', 'RENEWED BY'],
            ['revokedAt', 'REVOKED'],
          ])}`;
        });
      }),
    );

  cmd('deny', 'add UUIDs to the deny-list: /sign refuses them with 403')
    .argument('<uuid...>')
    .option('--reason <text>', 'why (shown in list-denied)', '')
    .option('--revoke', 'also revoke their certificates (keyCompromise): the CRL refuses them at gateways')
    .action((uuids: string[], o: DbOpts & { reason: string; revoke?: boolean }) =>
      withAdmin(o, env, async (api) => {
        const entries = await api.deny(uuidsArg(uuids), o.reason, { revoke: o.revoke });
        printResult(
          !!o.json,
          entries,
          () => `Denied ${entries.map((e) => e.uuid).join(', ')}${o.revoke ? ' and revoked their certificates' : ''}\n`,
        );
      }),
    );

  cmd('revoke', 'revoke certificates (all of the given devices, or --serial): the CRL lists them within seconds')
    .argument('[uuid...]')
    .option('--serial <hex...>', 'certificate serials (hex) instead of, or besides, device UUIDs')
    .option('--reason <reason>', `${REVOCATION_REASONS.join(', ')}`, 'unspecified')
    .action((uuids: string[], o: DbOpts & { serial?: string[]; reason: string }) =>
      withAdmin(o, env, async (api) => {
        if (!uuids.length && !o.serial?.length) throw usage('name device UUIDs or --serial S…');
        const reason = parseRevocationReason(o.reason);
        const rows = await api.revoke({ uuids: uuids.length ? uuidsArg(uuids) : undefined, serials: o.serial }, reason);
        printResult(!!o.json, rows, () =>
          table(rows, [
            ['serial', 'SERIAL'],
            ['uuid', 'UUID'],
            ['revokedAt', 'REVOKED'],
            ['reason', 'REASON'],
          ]),
        );
      }),
    );

  cmd('preauthorize', 'list devices in advance for preauthorized lots (CSV: uuid,key_sha256,hardware_id,name,lot)')
    .requiredOption('--file <csv>', 'the CSV file; every line is checked before anything is imported')
    .action((o: DbOpts & { file: string }) =>
      withAdmin(o, env, async (api) => {
        let text: string;
        try {
          text = readFileSync(o.file, 'utf8');
        } catch (err) {
          throw fileError('read', o.file, err);
        }
        const lots = new Set((await api.listLots()).map((l) => l.name));
        const rows = parsePreauthCsv(text, o.file, lots);
        const n = (await api.preauthorize(rows)).imported;
        printResult(!!o.json, { imported: n }, () => `Pre-authorized ${n} devices\n`);
      }),
    );

  cmd('allow-rekey', 'let registered devices register once with a new key (a replaced board, a wiped key store)')
    .argument('<uuid...>')
    .option('--reason <text>', 'why (shown in devices show)', '')
    .action((uuids: string[], o: DbOpts & { reason: string }) =>
      withAdmin(o, env, async (api) => {
        const entries = await api.allowRekey(uuidsArg(uuids), o.reason);
        printResult(!!o.json, entries, () => `Allowed one registration with a new key for ${entries.map((e) => e.uuid).join(', ')}\n`);
      }),
    );

  cmd('delete', 'delete devices and deny their UUIDs (as the upstream device API does)')
    .argument('<uuid...>')
    .option('--reason <text>', 'why (shown in list-denied)', 'deleted')
    .action((uuids: string[], o: DbOpts & { reason: string }) =>
      withAdmin(o, env, async (api) => {
        const ids = uuidsArg(uuids);
        const out = await api.deleteDevices(ids, o.reason);
        printResult(!!o.json, out, () => `Deleted, denied and revoked ${ids.join(', ')} (${out.revoked.length} certificates)\n`);
      }),
    );

  cmd('list-denied', 'list the deny-list')
    .option('--limit <n>', 'at most this many (default 100)')
    .option('--offset <n>', 'skip this many')
    .action((o: DbOpts & { limit?: string; offset?: string }) =>
      withAdmin(o, env, async (api) => {
        const rows = await api.listDenied(pageArg(o));
        printResult(!!o.json, rows, () =>
          table(rows, [
            ['uuid', 'UUID'],
            ['name', 'NAME'],
            ['deniedAt', 'DENIED'],
            ['reason', 'REASON'],
          ]),
        );
      }),
    );

  const upstreamOpts = (c: Command): Command =>
    c
      .option('--upstream-api <url>', `upstream device API (default $${SETTINGS.upstreamApi.env} or the config file's)`)
      .option('--upstream-token-file <file>', `upstream token file (default $${SETTINGS.upstreamTokenFile.env} or the config file's)`)
      .option('--factory <name>', 'factory name (default: the OU of local-ca.pem in the PKI directory)')
      .option(
        '--pki-dir <dir>',
        `PKI directory to read the factory from (default $${SETTINGS.pkiDir.env}, the config file's, or ${DEFAULTS.pkiDir})`,
      );

  const upstreamOf = (o: UpstreamOpts, config: ServeConfig): { client: UpstreamClient; factory: string } => {
    if (!config.upstream)
      throw usage(
        `needs the upstream API: --upstream-api and --upstream-token-file, ${SETTINGS.upstreamApi.env} and ${SETTINGS.upstreamTokenFile.env}, or the config file's`,
      );
    const token = readUpstreamToken(config.upstream.tokenFile);
    const factory = o.factory ?? readFactoryCerts(config.pkiDir).factory;
    return { client: createUpstreamClient({ api: config.upstream.api, token, timeoutMs: 30_000 }), factory };
  };

  upstreamOpts(cmd('sync-denied', 'pull the upstream deny-list (all pages) into the local one')).action((o: DbOpts & UpstreamOpts) =>
    withAdmin(o, env, async (api) => {
      const { client, factory } = upstreamOf(o, siteConfig(o, env));
      const entries = await client.listDenied(factory);
      const added = entries.length
        ? await api.deny(
            entries.map((e) => e.uuid),
            'upstream deny-list',
          )
        : [];
      printResult(
        !!o.json,
        { upstream: entries.length, entries: added },
        () => `Upstream deny-list of ${factory}: ${entries.length} devices; the local deny-list now holds them all\n`,
      );
    }),
  );

  upstreamOpts(cmd('delete-denied', 'remove UUIDs from the deny-list so they may register again'))
    .argument('<uuid...>')
    .option('--upstream', 'also delete them from the upstream deny-list')
    .action((uuids: string[], o: DbOpts & UpstreamOpts & { upstream?: boolean }) =>
      withAdmin(o, env, async (api) => {
        const ids = uuidsArg(uuids);
        if (o.upstream) {
          const { client, factory } = upstreamOf(o, siteConfig(o, env));
          for (const id of ids) await client.deleteDenied(factory, id);
        }
        await api.removeDenied(ids);
        printResult(!!o.json, { allowed: ids }, () => `Removed from the deny-list: ${ids.join(', ')}\n`);
      }),
    );
}
