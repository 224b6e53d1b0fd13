// `npm run bench`: drives POST /sign on a real `kilnctl serve` (SQLite file,
// file CA key by default, or --hsm for a SoftHSM2 token) with undici and prints
// registrations/s, p50/p99 latency, errors and the server's peak RSS per
// concurrency level; then the in-process issuance rate and device-register's
// wall time. Options: --requests N (20000), --levels 1,16,64, --runs N (1: with
// more, each run has a fresh server and database and the medians are printed
// last), --hsm, --json, --enrollment token (each run twice, alternating: an open
// server and one whose devices present a production lot's token; both are printed,
// and the token/open ratio), --db postgres://… (each run in a fresh schema of that
// database instead of a SQLite file), --replicas N (N servers on that one database, the
// load spread over them round-robin; CPU summed, in-server latency from the first).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import pg from 'pg';
import { Pool } from 'undici';
import { createCa } from '../pki/ca.js';
import { signCertificateForCsr } from '../pki/certificate.js';
import { parseCsrPem } from '../pki/csr.js';
import { createCsr, DEVICE_CSR_EXTENSIONS, deviceSubject } from '../pki/csr-builder.js';
import { pem } from '../pki/der.js';
import { createFactoryPki, generateP256 } from '../pki/factory-pki.js';
import { checkDevicePolicy, DEFAULT_KEY_POLICY } from '../pki/policy.js';
import { deviceTemplate } from '../pki/profiles.js';
import { randomSerial } from '../pki/serial.js';
import { loadNativeEcdsa } from '../server/native-ecdsa.js';
import { createCrl } from '../pki/crl.js';

const ROOT = join(fileURLToPath(import.meta.url), '../..');
const KILNCTL = join(ROOT, 'bin/kilnctl');
const FACTORY = 'bench-factory';
const SOFTHSM = '/usr/lib/softhsm/libsofthsm2.so';
/** The addon the served process loads too (same dist/ build). */
const ECDSA = loadNativeEcdsa();

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const flag = (name: string): boolean => process.argv.includes(`--${name}`);
const REQUESTS = Number(arg('requests', '20000'));
const LEVELS = arg('levels', '1,16,64').split(',').map(Number);
const RUNS = Math.max(1, Number(arg('runs', '1')) || 1);
const HSM = flag('hsm');
const JSON_OUT = flag('json');
const ENROLLMENT = arg('enrollment', 'open');
const DB = arg('db', '');
const REPLICAS = Math.max(1, Number(arg('replicas', '1')) || 1);
if (DB && !/^postgres(ql)?:\/\//.test(DB)) throw new Error('--db: a postgres:// URL (SQLite is the default)');
if (REPLICAS > 1 && !DB) throw new Error('--replicas needs --db postgres://…: replicas share one database');
if (ENROLLMENT !== 'open' && ENROLLMENT !== 'token') throw new Error('--enrollment: open or token');
type Mode = 'open' | 'token';
const log = (s: string): void => void process.stderr.write(s + '\n');

interface Level {
  concurrency: number;
  requests: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  peakRssMb: number;
  /** CPU time (user + system, all threads) per request: the server's and this load generator's. */
  serverCpuMs: number;
  eventLoopCpuMs: number;
  clientCpuMs: number;
  /** Times per request the event loop was switched out while it could run (another thread took its core). */
  eventLoopPreempted: number;
  /** latency_ms from the server's own request log line: time inside the server */
  serverP50Ms: number;
  serverP99Ms: number;
  /** medians of the request lines' sign_ms (verify + sign, pool wait included) and record_ms (group commit) */
  signP50Ms: number;
  recordP50Ms: number;
}

/** The server's /sign latencies logged since the last call: the whole request, signing, recording. */
function serverLatencies(work: string, from: { offset: number }): { total: number[]; sign: number[]; record: number[] } {
  const text = readFileSync(join(work, 'server.log'), 'utf8');
  const lines = text.slice(from.offset).split('\n');
  from.offset = text.length - lines[lines.length - 1].length;
  const out = { total: [] as number[], sign: [] as number[], record: [] as number[] };
  for (const line of lines.slice(0, -1)) {
    const e = JSON.parse(line) as { event?: string; path?: string; latency_ms?: number; sign_ms?: number; record_ms?: number };
    if (e.event !== 'request' || e.path !== '/sign' || e.latency_ms === undefined) continue;
    out.total.push(e.latency_ms);
    if (e.sign_ms !== undefined) out.sign.push(e.sign_ms);
    if (e.record_ms !== undefined) out.record.push(e.record_ms);
  }
  for (const a of Object.values(out)) a.sort((x, y) => x - y);
  return out;
}

function lmpBody(csr: string, uuid: string): string {
  return JSON.stringify({
    'hardware-id': 'intel-corei7-64',
    uuid,
    name: uuid,
    csr,
    'sota-config-dir': '/var/sota',
    'use-ostree-server': 'true',
    overrides: { pacman: { type: '"ostree+compose_apps"', compose_apps: '"shellhttpd"', reset_apps: '" "', tags: '"main"' } },
  }).replace(/\//g, '\\/');
}

async function makeBodies(n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const uuid = randomUUID();
    const der = await createCsr({
      subject: deviceSubject(uuid, FACTORY, i % 2 === 0),
      key: generateP256(),
      extensions: DEVICE_CSR_EXTENSIONS(),
    });
    out.push(lmpBody(pem('CERTIFICATE REQUEST', der), uuid));
  }
  return out;
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** The server and, with --workers, its worker processes. */
function processTree(pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((t) =>
    readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number),
  );
  return [pid, ...children.flatMap(processTree)];
}

/** Peak RSS (VmHWM) summed over the server's processes. */
function rssPeakMb(pid: number): number {
  const kb = processTree(pid).reduce(
    (sum, p) => sum + Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0),
    0,
  );
  return Math.round(kb / 102.4) / 10;
}

/** user + system CPU of a /proc stat file, in ms */
function statCpuMs(file: string): number {
  const stat = readFileSync(file, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}

/** The server's CPU, every thread of every process. */
const cpuMs = (pid: number): number => processTree(pid).reduce((sum, p) => sum + statCpuMs(`/proc/${p}/stat`), 0);

/** The server's event-loop thread alone: the stage every request passes through twice. */
const eventLoopCpuMs = (pid: number): number => statCpuMs(`/proc/${pid}/task/${pid}/stat`);
/** Involuntary context switches of the event-loop thread. */
const eventLoopPreemptions = (pid: number): number =>
  Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))?.[1] ?? 0);
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

async function drive(
  server: { url: string; urls: string[]; pid: number; pids: number[]; work: string; log: { offset: number } },
  bodies: string[],
  concurrency: number,
  samples: string[],
  token = 'na',
): Promise<Level> {
  const { pids } = server;
  serverLatencies(server.work, server.log);
  // one pool per replica; worker k always talks to replica k mod N (round-robin over the clients)
  const pools = server.urls.map(
    (u) =>
      new Pool(u, { connections: Math.ceil(concurrency / server.urls.length), pipelining: 1, headersTimeout: 30_000, bodyTimeout: 30_000 }),
  );
  const sum = (f: (pid: number) => number): number => pids.reduce((a, p) => a + f(p), 0);
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  // the load generator shares the two cores with the server: its bodies are encoded
  // before the clock starts, and an answer is decoded only when it is sampled (every
  // answer is still read to its end, and its status checked)
  const encoded = bodies.map((b) => Buffer.from(b));
  const sampleEvery = Math.max(1, Math.floor(bodies.length / 20));
  const headers = ['content-type', 'application/json', 'osf-token', token];
  const started = performance.now();
  const serverCpu0 = sum(cpuMs);
  const loopCpu0 = sum(eventLoopCpuMs);
  const preempted0 = sum(eventLoopPreemptions);
  const clientCpu0 = process.cpuUsage();
  const worker = async (k: number): Promise<void> => {
    const pool = pools[k % pools.length];
    while (next < encoded.length) {
      const i = next++;
      const t0 = performance.now();
      try {
        const res = await pool.request({ path: '/sign', method: 'POST', headers, body: encoded[i] });
        if (res.statusCode === 201 && i % sampleEvery === 0 && samples.length < 20) samples.push(await res.body.text());
        else await res.body.dump();
        if (res.statusCode !== 201) errors++;
      } catch {
        errors++;
      }
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, k) => worker(k)));
  const seconds = (performance.now() - started) / 1000;
  const serverCpu = sum(cpuMs) - serverCpu0;
  const loopCpu = sum(eventLoopCpuMs) - loopCpu0;
  const preempted = sum(eventLoopPreemptions) - preempted0;
  const clientCpu = process.cpuUsage(clientCpu0);
  await Promise.all(pools.map((p) => p.close()));
  latencies.sort((a, b) => a - b);
  const inServer = serverLatencies(server.work, server.log);
  return {
    concurrency,
    requests: bodies.length,
    perSecond: Math.round(bodies.length / seconds),
    p50Ms: Math.round(pct(latencies, 50) * 100) / 100,
    p99Ms: Math.round(pct(latencies, 99) * 100) / 100,
    errors,
    peakRssMb: Math.max(...pids.map(rssPeakMb)),
    serverCpuMs: Math.round((serverCpu / bodies.length) * 1000) / 1000,
    eventLoopCpuMs: Math.round((loopCpu / bodies.length) * 1000) / 1000,
    clientCpuMs: Math.round(((clientCpu.user + clientCpu.system) / 1000 / bodies.length) * 1000) / 1000,
    eventLoopPreempted: Math.round((preempted / bodies.length) * 100) / 100,
    serverP50Ms: pct(inServer.total, 50),
    serverP99Ms: pct(inServer.total, 99),
    signP50Ms: pct(inServer.sign, 50),
    recordP50Ms: pct(inServer.record, 50),
  };
}

interface RunningBench {
  url: string;
  urls: string[];
  pid: number;
  pids: number[];
  /** the --db every replica was given */
  db: string;
  work: string;
  log: { offset: number };
  /** SIGTERM, resolved once the server has exited */
  stop: () => Promise<void>;
}

/** A port the kernel says is free now. */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });

/** One `kilnctl serve` on `db`, its JSON log in `runDir/<logName>`. */
async function startOne(
  work: string,
  runDir: string,
  caKey: string,
  env: NodeJS.ProcessEnv,
  extra: string[],
  db: string,
  logName: string,
): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      // e.g. KILN_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the server
      ...(process.env.KILN_BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
      KILNCTL,
      'serve',
      '--pki-dir',
      join(work, 'pki'),
      '--ca-key',
      caKey,
      '--db',
      db,
      '--listen',
      `127.0.0.1:${port}`,
      '--admin-listen',
      'off',
      ...extra,
    ],
    {
      env: { ...process.env, ...env },
      // its JSON log, for the server-side latency of each level
      stdio: ['ignore', openSync(join(runDir, logName), 'w'), 'inherit'],
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  process.once('exit', () => child.kill('SIGKILL'));
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return { url, pid: child.pid!, stop: () => (child.kill('SIGTERM'), exited) };
    } catch {
      /* starting */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error('kilnctl serve did not start');
}

/** The servers of a run (REPLICAS of them on one PostgreSQL schema, or one on a SQLite file in `runDir`). */
async function startServer(
  work: string,
  runDir: string,
  caKey: string,
  env: NodeJS.ProcessEnv,
  extra: string[] = [],
): Promise<RunningBench> {
  let db = `sqlite:${join(runDir, 'kiln.db')}`;
  let dropSchema = async (): Promise<void> => undefined;
  if (DB) {
    const schema = `kiln_bench_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: DB });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    const u = new URL(DB);
    u.searchParams.set('options', `-c search_path=${schema}`);
    db = u.toString();
    dropSchema = async () => {
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    };
  }
  // replicas start together: the first migrates, the others wait on its lock
  const servers = await Promise.all(
    Array.from({ length: REPLICAS }, (_, k) => startOne(work, runDir, caKey, env, extra, db, k === 0 ? 'server.log' : `server-${k}.log`)),
  );
  return {
    url: servers[0].url,
    urls: servers.map((x) => x.url),
    pid: servers[0].pid,
    pids: servers.map((x) => x.pid),
    db,
    work: runDir,
    log: { offset: 0 },
    stop: async () => {
      await Promise.all(servers.map((x) => x.stop()));
      await dropSchema();
    },
  };
}

function setUpPki(work: string): { caKey: string; env: NodeJS.ProcessEnv } {
  const pkiDir = join(work, 'pki');
  const initArgs = ['pki', 'init', '--dir', pkiDir, '--factory', FACTORY, '--gateway-dns', 'gw.bench.test'];
  if (!HSM) {
    execFileSync(KILNCTL, initArgs, { stdio: 'ignore' });
    return { caKey: join(pkiDir, 'local-ca.key'), env: {} };
  }
  mkdirSync(join(work, 'tokens'));
  const conf = join(work, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(work, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  writeFileSync(join(work, 'pin'), '1234\n', { mode: 0o600 });
  const env = { SOFTHSM2_CONF: conf };
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'bench', '--pin', '1234', '--so-pin', '5678'], {
    env: { ...process.env, ...env },
    stdio: 'ignore',
  });
  const caKey = `pkcs11:token=bench;object=local-ca?module-path=${SOFTHSM}&pin-source=file:${join(work, 'pin')}`;
  execFileSync(KILNCTL, [...initArgs, '--ca-key', caKey], { env: { ...process.env, ...env }, stdio: 'ignore' });
  return { caKey, env };
}

/** Parse + verify + policy + sign in one loop, no HTTP, no DB. */
async function inProcessRate(seconds: number): Promise<number> {
  const files = await createFactoryPki({ factory: FACTORY, owner: 'o', dnsNames: ['gw'], now: new Date() });
  const get = (n: string): string => files.find((f) => f.name === n)!.content;
  const ca = createCa(Buffer.from(get('local-ca.pem').replace(/-----[^-]+-----|\s/g, ''), 'base64'), ECDSA.pemSigner(get('local-ca.key')));
  const csrs = (await makeBodies(200)).map((b) => (JSON.parse(b) as { csr: string }).csr);
  const policy = { factory: FACTORY, ...DEFAULT_KEY_POLICY };
  let n = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const csr = parseCsrPem(csrs[n % csrs.length]);
    checkDevicePolicy(csr, policy);
    await signCertificateForCsr(
      deviceTemplate({ ca, csr, serial: randomSerial(randomBytes), notBefore: new Date(), validityDays: 7300 }),
      ca.signer,
      csr,
      ECDSA.verifier,
    );
    n++;
  }
  return Math.round(n / seconds);
}

/** A CRL of `n` revoked certificates, built and signed by the local CA (file key): the median of three, ms. */
async function crlMs(n: number): Promise<{ ms: number; bytes: number }> {
  const files = await createFactoryPki({ factory: FACTORY, owner: 'o', dnsNames: ['gw'], now: new Date() });
  const get = (name: string): string => files.find((f) => f.name === name)!.content;
  const ca = createCa(Buffer.from(get('local-ca.pem').replace(/-----[^-]+-----|\s/g, ''), 'base64'), ECDSA.pemSigner(get('local-ca.key')));
  const reasons = ['keyCompromise', 'cessationOfOperation', 'superseded', 'unspecified'] as const;
  const entries = Array.from({ length: n }, (_, i) => ({
    serial: randomBytes(16)
      .toString('hex')
      .replace(/^(00)+/, ''),
    revokedAt: new Date(),
    reason: reasons[i % reasons.length],
  }));
  const times: number[] = [];
  let bytes = 0;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    const der = await createCrl(ca, { number: r + 1, thisUpdate: new Date(), nextUpdate: new Date(Date.now() + 86_400_000), entries });
    times.push(performance.now() - t0);
    bytes = der.length;
  }
  return { ms: Math.round(median(times)), bytes };
}

function deviceRegisterWallMs(url: string, work: string, runs: number): number {
  writeFileSync(join(work, 'os-release'), `LMP_FACTORY="${FACTORY}"\nLMP_MACHINE="bench"\n`);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(
      join(ROOT, 'bin/device-register'),
      ['--os-release', join(work, 'os-release'), '-d', join(work, `dev-${i}`), '--start-daemon', '0'],
      {
        env: { ...process.env, DEVICE_API: `${url}/sign`, NODE_EXTRA_CA_CERTS: '' },
      },
    );
    times.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`device-register failed: ${r.stderr.toString()}`);
  }
  times.sort((a, b) => a - b);
  return Math.round(pct(times, 50));
}

function verifySamples(work: string, samples: string[]): { checked: number; ok: number } {
  let ok = 0;
  samples.forEach((text, i) => {
    const files = JSON.parse(text) as Record<string, string>;
    const dir = join(work, `sample-${i}`);
    mkdirSync(dir);
    for (const [k, v] of Object.entries(files)) writeFileSync(join(dir, k), v);
    const r = spawnSync('openssl', [
      'verify',
      '-CAfile',
      join(dir, 'root.crt'),
      '-untrusted',
      join(dir, 'client.chained'),
      join(dir, 'client.pem'),
    ]);
    if (r.status === 0) ok++;
  });
  return { checked: samples.length, ok };
}

interface Run {
  levels: Level[];
  deviceRegisterMedianMs: number;
}

/** One run: a fresh server and database, every level, then device-register. */
async function run(
  work: string,
  runDir: string,
  pki: { caKey: string; env: NodeJS.ProcessEnv },
  plan: { c: number; n: number }[],
  bodies: string[],
  samples: string[],
  mode: Mode = 'open',
): Promise<Run> {
  mkdirSync(runDir);
  const server = await startServer(work, runDir, pki.caKey, pki.env, mode === 'token' ? ['--enrollment', 'token'] : []);
  const levels: Level[] = [];
  const sampled: string[] = []; // 20 answers from each run
  try {
    let token = 'na';
    if (mode === 'token') {
      // a production lot as a factory would make one: its token in a 0600 file
      const tokenFile = join(runDir, 'lot.token');
      execFileSync(KILNCTL, ['lots', 'create', 'bench-lot', '--token-out', tokenFile, '--db', server.db], {
        stdio: 'ignore',
      });
      token = readFileSync(tokenFile, 'utf8').trim();
    }
    let offset = 0;
    for (const p of plan) {
      log(`bench: ${mode} enrollment, concurrency ${p.c}, ${p.n} requests`);
      levels.push(await drive(server, bodies.slice(offset, offset + p.n), p.c, sampled, token));
      offset += p.n;
    }
    return { levels, deviceRegisterMedianMs: mode === 'open' ? deviceRegisterWallMs(server.url, runDir, 10) : NaN };
  } finally {
    await server.stop();
    samples.push(...sampled);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Per level, the median of each figure over the runs; errors summed, RSS the highest. */
function medianLevels(runs: Run[]): Level[] {
  return runs[0].levels.map((first, i) => {
    const all = runs.map((r) => r.levels[i]);
    const m = (f: (l: Level) => number): number => median(all.map(f));
    return {
      concurrency: first.concurrency,
      requests: first.requests,
      perSecond: Math.round(m((l) => l.perSecond)),
      p50Ms: m((l) => l.p50Ms),
      p99Ms: m((l) => l.p99Ms),
      errors: all.reduce((sum, l) => sum + l.errors, 0),
      peakRssMb: Math.max(...all.map((l) => l.peakRssMb)),
      serverCpuMs: m((l) => l.serverCpuMs),
      eventLoopCpuMs: m((l) => l.eventLoopCpuMs),
      clientCpuMs: m((l) => l.clientCpuMs),
      eventLoopPreempted: m((l) => l.eventLoopPreempted),
      serverP50Ms: m((l) => l.serverP50Ms),
      serverP99Ms: m((l) => l.serverP99Ms),
      signP50Ms: m((l) => l.signP50Ms),
      recordP50Ms: m((l) => l.recordP50Ms),
    };
  });
}

const TABLE_HEADER =
  'concurrency  requests   reg/s   p50 ms   p99 ms  in server p50/p99 ms  errors  server peak RSS MB  CPU ms/req: server (event loop)  load gen  loop preempted/req  p50 ms: sign / record';

const tableLine = (l: Level): string =>
  `${String(l.concurrency).padStart(11)}  ${String(l.requests).padStart(8)}  ${String(l.perSecond).padStart(6)}  ${l.p50Ms.toFixed(2).padStart(7)}  ${l.p99Ms.toFixed(2).padStart(7)}  ${`${l.serverP50Ms.toFixed(2)} / ${l.serverP99Ms.toFixed(2)}`.padStart(20)}  ${String(l.errors).padStart(6)}  ${String(l.peakRssMb).padStart(18)}  ${`${l.serverCpuMs.toFixed(3)} (${l.eventLoopCpuMs.toFixed(3)})`.padStart(31)}  ${l.clientCpuMs.toFixed(3).padStart(8)}  ${l.eventLoopPreempted.toFixed(2).padStart(19)}  ${`${l.signP50Ms.toFixed(2)} / ${l.recordP50Ms.toFixed(2)}`.padStart(21)}`;

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'kiln-bench-'));
  // the databases, PKI and device directories of a run: ~50 MB for 42,000 registrations
  process.once('exit', () => rmSync(work, { recursive: true, force: true }));
  const pki = setUpPki(work);
  const plan = LEVELS.map((c) => ({ c, n: c === 1 ? Math.min(REQUESTS, 2000) : REQUESTS }));
  log(`bench: generating ${plan.reduce((a, p) => a + p.n, 0)} device CSRs`);
  const bodies = await makeBodies(plan.reduce((a, p) => a + p.n, 0));
  const runs: Run[] = [];
  const tokenRuns: Run[] = [];
  const samples: string[] = [];
  for (let r = 1; r <= RUNS; r++) {
    if (RUNS > 1) log(`bench: run ${r} of ${RUNS}`);
    // every run registers the same devices, each time into a fresh database
    runs.push(await run(work, join(work, `run-${r}`), pki, plan, bodies, samples));
    if (ENROLLMENT === 'token') tokenRuns.push(await run(work, join(work, `run-${r}-token`), pki, plan, bodies, samples, 'token'));
  }
  const tokenLevels = tokenRuns.length === 0 ? undefined : RUNS > 1 ? medianLevels(tokenRuns) : tokenRuns[0].levels;
  const levels = RUNS > 1 ? medianLevels(runs) : runs[0].levels;
  const deviceMs = Math.round(median(runs.map((r) => r.deviceRegisterMedianMs)));
  const inProcess = await inProcessRate(3);
  const crl = await crlMs(100_000);
  const verified = verifySamples(work, samples);
  const result = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, memGb: Math.round(totalmem() / 2 ** 30), node: process.version },
    caKey: HSM ? 'pkcs11 (SoftHSM2)' : 'file',
    csrVerify: ECDSA.backend,
    levels,
    ...(tokenLevels ? { tokenEnrollment: { levels: tokenLevels, ...(RUNS > 1 ? { runs: tokenRuns } : {}) } } : {}),
    ...(RUNS > 1 ? { runs } : {}),
    inProcessCertificatesPerSecond: inProcess,
    crl100kMs: crl.ms,
    deviceRegisterMedianMs: deviceMs,
    opensslVerifiedSamples: verified,
  };
  if (JSON_OUT) {
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    return;
  }
  const out = [
    `Kiln /sign benchmark — ${result.machine.cpus} cores, ${result.machine.model}, Node ${result.machine.node}, CA key: ${result.caKey}, CSR verification: ${result.csrVerify}`,
    '',
  ];
  if (RUNS > 1) {
    runs.forEach((r, i) => out.push(`run ${i + 1}`, TABLE_HEADER, ...r.levels.map(tableLine), ''));
    out.push(`median of ${RUNS} runs (errors: all runs; RSS: the highest)`);
  }
  out.push(TABLE_HEADER, ...levels.map(tableLine));
  if (tokenLevels) {
    if (RUNS > 1) tokenRuns.forEach((r, i) => out.push('', `token enrollment, run ${i + 1}`, TABLE_HEADER, ...r.levels.map(tableLine)));
    out.push(
      '',
      `token enrollment (--enrollment token, a production lot's token in OSF-TOKEN)${RUNS > 1 ? `, median of ${RUNS} runs` : ''}`,
    );
    out.push(TABLE_HEADER, ...tokenLevels.map(tableLine));
    out.push(
      '',
      'token / open: ' +
        tokenLevels.map((l, i) => `${l.concurrency}: ${Math.round((l.perSecond / levels[i].perSecond) * 1000) / 10}%`).join(', '),
    );
  }
  out.push('', `in-process issuance (parse + verify + policy + sign): ${inProcess} certificates/s`);
  out.push(`CRL of 100,000 revoked certificates, built and signed (median of 3): ${crl.ms} ms, ${Math.round(crl.bytes / 1024)} KiB`);
  out.push(`device-register, one registration (median of 10${RUNS > 1 ? ' per run, median of the runs' : ''}): ${deviceMs} ms`);
  out.push(`openssl verify of ${verified.checked} sampled certificates: ${verified.ok} OK`);
  process.stdout.write(out.join('\n') + '\n');
}

await main();
