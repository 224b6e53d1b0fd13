// Certificate serial numbers.
import { randomBytes } from 'node:crypto';
import { isCanonicalUuid } from './policy.js';

export type RandomSource = (n: number) => Uint8Array;

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
