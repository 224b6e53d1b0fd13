// The options by which every admin command finds the site: the same names as `kilnctl serve`.
import type { Command } from 'commander';
import { CONFIG_ENV, DEFAULTS, SETTINGS } from '../../server/config.js';

export function siteOptions(c: Command): Command {
  return c
    .option('--config <file>', `JSON config file, as for kilnctl serve (default $${CONFIG_ENV})`)
    .option('--db <url>', `registry database (default $${SETTINGS.db.env}, the config file's, or ${DEFAULTS.db})`)
    .option('--server <url>', "work through a running server's admin API instead (default $KILN_ADMIN_URL)")
    .option('--token-file <file>', 'with --server: the file holding an admin token (default $KILN_ADMIN_TOKEN_FILE)');
}
