// Per-client-address rate limiting for the device network: a token bucket per address
// (rate per second, a burst of one second's worth). Off unless configured.
export interface RateLimiter {
  /** Takes one request's token; undefined if allowed, else the seconds to wait. */
  take(address: string, nowMs: number): number | undefined;
}

/** Addresses kept at most; past that, full (idle) buckets are forgotten. */
const MAX_TRACKED = 50_000;

export function createRateLimiter(perSecond: number): RateLimiter {
  const burst = Math.max(1, perSecond);
  const buckets = new Map<string, { tokens: number; at: number }>();
  const sweep = (nowMs: number): void => {
    for (const [addr, b] of buckets) if (b.tokens + ((nowMs - b.at) / 1000) * perSecond >= burst) buckets.delete(addr);
  };
  return {
    take(address, nowMs) {
      let b = buckets.get(address);
      if (!b) {
        if (buckets.size >= MAX_TRACKED) sweep(nowMs);
        b = { tokens: burst, at: nowMs };
        buckets.set(address, b);
      }
      b.tokens = Math.min(burst, b.tokens + ((nowMs - b.at) / 1000) * perSecond);
      b.at = nowMs;
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return undefined;
      }
      return Math.max(1, Math.ceil((1 - b.tokens) / perSecond));
    },
  };
}
