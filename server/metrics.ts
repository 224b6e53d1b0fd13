// Prometheus metrics (GET /metrics), with prom-client on a registry of our own.
// On the /sign path a request costs two counter/histogram updates (no label built
// from input: the refusal reason is the error code, a closed set); everything read from
// the registry (outbox, lots) or the PKI is gathered when Prometheus scrapes.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Store, WriterStats } from './db/store.js';
import type { SignTrace } from './sign-service.js';

export interface MetricsSources {
  version: string;
  store: Store;
  /** The CA key's backend and state (ready, or why not). */
  keyState: () => { backend: string; state: string };
  /** notAfter of the local CA and the root. */
  certificates: { localCa: Date; root: Date };
  clock: () => Date;
}

export type Route = 'sign' | 'est_enroll' | 'est_reenroll';

export interface Metrics {
  registry: Registry;
  /** A finished registration request (/sign or EST): its status, refusal code, and where the time went. */
  request(route: Route, status: number, code: string | undefined, seconds: number, trace: SignTrace): void;
  /** Where the in-flight gauge reads /sign's count (read at scrape time, not updated per request). */
  watchInFlight(read: () => number): void;
  /** A refusal before the request was read: overload (503) or the rate limit (429). */
  shed(reason: 'overload' | 'rate_limit'): void;
  /** The writer thread committed a batch of this many records. */
  batch(size: number): void;
  writerRestart(): void;
}

const LATENCY_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const outcomeOf = (status: number, trace: SignTrace): string =>
  status < 300 ? (status === 202 ? 'pending' : trace.repeat ? 'repeat' : 'issued') : status >= 500 ? 'error' : 'refused';

export function createMetrics(src: MetricsSources): Metrics {
  const registry = new Registry();
  const registrations = new Counter({
    name: 'kiln_registrations_total',
    help: 'Registration requests (/sign and EST) by route, outcome (issued, repeat, pending, refused, error) and refusal code',
    labelNames: ['route', 'outcome', 'reason'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'kiln_request_duration_seconds',
    help: 'Registration request latency in the server, from the first byte read to the answer',
    labelNames: ['route'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const signTime = new Histogram({
    name: 'kiln_sign_duration_seconds',
    help: 'CSR check and certificate signature (thread pool or HSM wait included)',
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const recordTime = new Histogram({
    name: 'kiln_record_duration_seconds',
    help: 'Recording in the registry (group commit wait included)',
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  let readInFlight = (): number => 0;
  new Gauge({
    name: 'kiln_sign_in_flight',
    help: '/sign requests being served',
    registers: [registry],
    collect() {
      this.set(readInFlight());
    },
  });
  const shed = new Counter({
    name: 'kiln_requests_shed_total',
    help: '/sign requests refused before they were read: overload (503) or rate_limit (429)',
    labelNames: ['reason'],
    registers: [registry],
  });
  const batchSize = new Histogram({
    name: 'kiln_writer_batch_size',
    help: 'Records per registry transaction on the writer thread',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [registry],
  });
  const restarts = new Counter({
    name: 'kiln_writer_restarts_total',
    help: 'Writer threads started again after one stopped',
    registers: [registry],
  });
  const writerGauge = (name: string, help: string, read: (s: WriterStats) => number): Gauge =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const s = src.store.writerStats();
        if (s) this.set(read(s));
      },
    });
  writerGauge('kiln_writer_queue_depth', 'Records handed to the writer thread and not answered yet', (s) => s.queueDepth);
  writerGauge('kiln_writer_up', '1 while the writer thread runs, 0 while it is restarted', (s) => (s.state === 'running' ? 1 : 0));

  new Gauge({
    name: 'kiln_outbox_entries',
    help: 'Upstream deliveries by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const s = await src.store.outboxSummary(src.clock()).catch(() => undefined);
      if (!s) return;
      this.set({ status: 'pending' }, s.pending);
      this.set({ status: 'failed' }, s.failed);
      this.set({ status: 'delivered' }, s.delivered);
    },
  });
  new Gauge({
    name: 'kiln_outbox_oldest_pending_age_seconds',
    help: 'Age of the oldest undelivered upstream delivery (0: none)',
    registers: [registry],
    async collect() {
      const s = await src.store.outboxSummary(src.clock()).catch(() => undefined);
      if (s) this.set(s.oldestPendingAgeSeconds ?? 0);
    },
  });
  new Gauge({
    name: 'kiln_ca_key_up',
    help: "1 when the CA key answers (file or HSM), by backend; 0 with the key's state otherwise",
    labelNames: ['backend'],
    registers: [registry],
    collect() {
      const k = src.keyState();
      this.reset();
      this.set({ backend: k.backend }, k.state === 'ready' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'kiln_certificate_not_after_seconds',
    help: 'notAfter of the local CA and the root, as a Unix time',
    labelNames: ['certificate'],
    registers: [registry],
    collect() {
      this.set({ certificate: 'local_ca' }, src.certificates.localCa.getTime() / 1000);
      this.set({ certificate: 'root' }, src.certificates.root.getTime() / 1000);
    },
  });
  const lotLabels = ['lot'];
  // gauges collect concurrently: each reads the lots itself
  new Gauge({
    name: 'kiln_lot_devices',
    help: 'Devices admitted per production lot',
    labelNames: lotLabels,
    registers: [registry],
    async collect() {
      const lots = await src.store.listLots().catch(() => []);
      this.reset();
      for (const l of lots) this.set({ lot: l.name }, l.admitted);
    },
  });
  new Gauge({
    name: 'kiln_lot_max_devices',
    help: "A lot's --max-devices (lots without a limit are not listed)",
    labelNames: lotLabels,
    registers: [registry],
    async collect() {
      const lots = await src.store.listLots().catch(() => []);
      this.reset();
      for (const l of lots) if (l.maxDevices !== null) this.set({ lot: l.name }, l.maxDevices);
    },
  });
  new Gauge({
    name: 'kiln_build_info',
    help: 'Always 1: the running version',
    labelNames: ['version', 'node'],
    registers: [registry],
  }).set({ version: src.version, node: process.version }, 1);

  const counters = new Map<string, ReturnType<typeof registrations.labels>>();
  const latencies = new Map<string, ReturnType<typeof latency.labels>>();
  return {
    registry,
    watchInFlight: (read) => void (readInFlight = read),
    request(route, status, code, seconds, trace) {
      // labelled children are looked up once per label set: the hot path does no label hashing
      const outcome = outcomeOf(status, trace);
      const reason = status >= 300 ? (code ?? 'unknown') : '';
      const key = `${route}\u0000${outcome}\u0000${reason}`;
      let counter = counters.get(key);
      if (!counter) counters.set(key, (counter = registrations.labels(route, outcome, reason)));
      counter.inc();
      let byRoute = latencies.get(route);
      if (!byRoute) latencies.set(route, (byRoute = latency.labels(route)));
      byRoute.observe(seconds);
      if (trace.signMs !== undefined) signTime.observe(trace.signMs / 1000);
      if (trace.recordMs !== undefined) recordTime.observe(trace.recordMs / 1000);
    },
    shed: (reason) => shed.inc({ reason }),
    batch: (size) => batchSize.observe(size),
    writerRestart: () => restarts.inc(),
  };
}
