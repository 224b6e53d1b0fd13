// Certificate serial numbers.
import { randomBytes } from 'node:crypto';
import { isCanonicalUuid } from './policy.js';

export type RandomSource = (n: number) => Uint8Array;

/** randomBytes drawn 4 KiB at a time (one CSPRNG call per 256 serials); each byte is handed out once. */
export function pooledRandom(poolBytes = 4096): RandomSource {
  let pool = Buffer.alloc(0);
  let off = 0;
  return (n) => {
    if (n > poolBytes) return randomBytes(n);
    if (off + n > pool.length) {
      pool = randomBytes(poolBytes);
      off = 0;
    }
    const out = Buffer.from(pool.subarray(off, off + n));
    pool.fill(0, off, off + n);
    off += n;
    return out;
  };
}

/** A random positive 16-byte serial: 126 random bits, the top byte never zero. */
export function randomSerial(random: RandomSource = randomBytes): Buffer {
  const b = Buffer.from(random(16));
  b[0] = (b[0] & 0x7f) | 0x40;
  return b;
}

/** The reference server's serial: the UUID read as a 128-bit integer. */
export function uuidSerial(uuid: string): Buffer {
  if (!isCanonicalUuid(uuid)) throw new Error('not a UUID');
  return Buffer.from(uuid.replace(/-/g, ''), 'hex');
}

/** Serial as lower-case hex without leading zero bytes (as the registry stores it). */
export function serialHex(serial: Uint8Array): string {
  return Buffer.from(serial)
    .toString('hex')
    .replace(/^(00)+(?=.)/, '');
}
