// A small real HTTP server standing in for a registration server: it records
// every request and answers as the test tells it to.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** An answer, sent after `delayMs` when given; or no answer at all ('hang'), or the connection cut ('drop'). */
export type Answer = { status: number; body: string; contentType?: string; delayMs?: number } | 'hang' | 'drop';

export interface StandIn {
  url: string;
  seen: Seen[];
  answer: (fn: (req: Seen) => Answer) => void;
  close: () => Promise<void>;
}

export async function startStandIn(): Promise<StandIn> {
  const seen: Seen[] = [];
  let decide: (req: Seen) => Answer = () => ({ status: 201, body: '{}' });
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      seen.push(s);
      const a = req.method === 'HEAD' ? { status: 200, body: '' } : decide(s);
      if (a === 'hang') return;
      if (a === 'drop') return req.socket.destroy();
      const send = (): void => {
        if (res.destroyed) return;
        res.writeHead(a.status, { 'Content-Type': a.contentType ?? 'application/json' });
        res.end(a.body);
      };
      if (a.delayMs) setTimeout(send, a.delayMs);
      else send();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/sign`,
    seen,
    answer: (fn) => (decide = fn),
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
