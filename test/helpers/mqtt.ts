// A minimal MQTT 3.1.1 client over TLS for the broker test: connect with a device's
// certificate, wait for CONNACK, publish one message at QoS 0, disconnect.
import { connect } from 'node:tls';

const str = (s: string): Buffer => {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};

function packet(type: number, body: Buffer): Buffer {
  const len: number[] = [];
  let n = body.length;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    len.push(byte);
  } while (n > 0);
  return Buffer.concat([Buffer.from([type, ...len]), body]);
}

export interface MqttTry {
  /** CONNACK accepted and the message sent */
  ok: boolean;
  /** why not, when not */
  error?: string;
}

/** Connects to host:port as a TLS client with `cert`/`key`, trusting `ca` for the broker (checked as `servername`). */
export function mqttPublish(o: {
  port: number;
  ca: string;
  cert: string;
  key: string;
  servername: string;
  clientId: string;
  topic: string;
  message: string;
}): Promise<MqttTry> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: MqttTry): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(r);
    };
    const socket = connect({ host: '127.0.0.1', port: o.port, ca: o.ca, cert: o.cert, key: o.key, servername: o.servername }, () => {
      const variable = Buffer.concat([str('MQTT'), Buffer.from([4, 0x02, 0, 30])]);
      socket.write(packet(0x10, Buffer.concat([variable, str(o.clientId)])));
    });
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 4) return;
      if (buf[0] !== 0x20 || buf[3] !== 0) return done({ ok: false, error: `CONNACK refused (return code ${buf[3]})` });
      socket.write(packet(0x30, Buffer.concat([str(o.topic), Buffer.from(o.message)])));
      socket.write(packet(0xe0, Buffer.alloc(0)), () => done({ ok: true }));
    });
    socket.on('error', (err) => done({ ok: false, error: (err as NodeJS.ErrnoException).code ?? err.message }));
    socket.on('close', () => done({ ok: false, error: 'closed before CONNACK' }));
    socket.setTimeout(5000, () => done({ ok: false, error: 'timed out' }));
  });
}
