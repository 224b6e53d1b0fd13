import { describe, expect, it } from 'vitest';
import { pooledRandom, randomSerial, serialHex } from './serial.js';

describe('serials', () => {
  it('ok/pooled randomness: across refills every serial is distinct, 16 bytes, positive, top byte non-zero', () => {
    const random = pooledRandom(64); // a refill every 4 serials
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const s = randomSerial(random);
      expect(s).toHaveLength(16);
      expect(s[0] & 0x80).toBe(0);
      expect(s[0]).toBeGreaterThanOrEqual(0x40);
      seen.add(serialHex(s));
    }
    expect(seen.size).toBe(2000);
  });

  it('ok/pooled randomness: draws do not share memory; large draws bypass the pool', () => {
    const random = pooledRandom(64);
    const a = random(16);
    const b = random(16);
    const copy = Buffer.from(b);
    a.fill(0xaa);
    expect(Buffer.from(b).equals(copy)).toBe(true);
    expect(random(100)).toHaveLength(100);
    expect(random(0)).toHaveLength(0);
  });
});
