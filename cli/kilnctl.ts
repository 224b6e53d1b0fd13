// kilnctl: the registration server and its admin commands.
import { Command } from 'commander';
import { addDevicesCommands } from './devices-commands.js';
import { addPkiCommands } from './pki-commands.js';
import { addServeCommand } from './serve-command.js';
import { runMain } from './shared/run.js';
import { addUpstreamCommands } from './upstream-commands.js';

export function createProgram(env: NodeJS.ProcessEnv): Command {
  const program = new Command('kilnctl')
    .description('Kiln: factory device registration server, PKI and admin')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');
  program.configureHelp({ showGlobalOptions: true });
  addServeCommand(program, env);
  addPkiCommands(program);
  addDevicesCommands(program, env);
  addUpstreamCommands(program, env);
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
