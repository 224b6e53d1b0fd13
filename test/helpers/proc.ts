// Running Kiln's CLIs and openssl as real processes.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(fileURLToPath(import.meta.url), '../../..');
export const KILNCTL = join(ROOT, 'bin/kilnctl');

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...opts.env }, cwd: opts.cwd, input: opts.input });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export const kilnctl = (args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Run => run(KILNCTL, args, opts);

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface ServerProcess {
  url: string;
  /** the admin API's base URL */
  adminUrl: string;
  logs: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** Starts `kilnctl serve` with `args` on a free port and waits for /healthz. */
export async function startKilnctl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const port = await freePort();
  const adminPort = await freePort();
  const child = spawn(KILNCTL, ['serve', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // HTTPS: the test's fetch does not know the site's root, so the start-up line says when it listens
  const tls = args.includes('--tls-cert');
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`kilnctl serve exited ${child.exitCode}: ${out}`);
    if (tls && out.includes('"event":"started"')) break;
    try {
      if (!tls && (await fetch(`${url}/healthz`)).ok) break;
    } catch {
      /* not yet listening */
    }
    if (i > 100) throw new Error(`kilnctl serve did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    logs: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** `openssl verify` of a device certificate against root + local CA files. */
export function opensslVerify(rootFile: string, untrustedFile: string, certFile: string): Run {
  return run('openssl', ['verify', '-CAfile', rootFile, '-untrusted', untrustedFile, certFile]);
}

/** Like run(), without blocking the event loop (for servers inside the test process). */
export function runAsync(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** kilnctl without blocking the event loop (when the test process serves what it talks to). */
export const kilnctlAsync = (args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> =>
  runAsync(KILNCTL, args, opts);

/**
 * A root for `systemd-analyze verify --root`: the system's own units, plus the given
 * files (path inside the root → source file) such as a unit and the program it starts.
 */
export function systemdRoot(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'kiln-unit-'));
  mkdirSync(join(root, 'usr/lib/systemd'), { recursive: true });
  cpSync('/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true });
  for (const [inside, source] of Object.entries(files)) {
    mkdirSync(dirname(join(root, inside)), { recursive: true });
    cpSync(source, join(root, inside));
  }
  return root;
}
