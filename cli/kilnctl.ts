// kilnctl: the registration server and its admin commands.
import { Command } from 'commander';
import { VERSION } from '../pki/version.js';
import { addAdminCommands } from './admin-commands.js';
import { addApprovalsCommands } from './approvals-commands.js';
import { addDbCommands } from './db-commands.js';
import { addDevicesCommands } from './devices-commands.js';
import { addLotsCommands } from './lots-commands.js';
import { addPkiCommands } from './pki-commands.js';
import { addServeCommand } from './serve-command.js';
import { EXIT_CODES_HELP, runMain, usage } from './shared/run.js';
import { addUpstreamCommands } from './upstream-commands.js';

export function createProgram(env: NodeJS.ProcessEnv): Command {
  const program = new Command('kilnctl')
    .description('Kiln: factory device registration server, PKI and admin')
    .version(VERSION, '-V, --version', 'print the version')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', `\nConfiguration: see "kilnctl serve --help"; the admin commands read the same settings.\n${EXIT_CODES_HELP}`)
    .action(() => {
      // a bare `kilnctl` is a usage mistake, not a success
      process.stderr.write(program.helpInformation());
      throw usage('name a command');
    });
  program.configureHelp({ showGlobalOptions: true });
  addServeCommand(program, env);
  addPkiCommands(program, env);
  addDevicesCommands(program, env);
  addUpstreamCommands(program, env);
  addLotsCommands(program, env);
  addApprovalsCommands(program, env);
  addAdminCommands(program, env);
  addDbCommands(program, env);
  // every sub-command reports usage errors through the same path
  const override = (c: Command): void => {
    c.exitOverride();
    c.commands.forEach(override);
  };
  override(program);
  return program;
}

await runMain('kilnctl', async () => {
  await createProgram(process.env).parseAsync(process.argv);
});
