// device-register: the on-device client, option-compatible with lmp-device-register.
import { main } from './device-register/main.js';
import { runMain } from './shared/run.js';

await runMain('device-register', () => main(process.argv.slice(2), process.env, (s) => process.stdout.write(s)));
