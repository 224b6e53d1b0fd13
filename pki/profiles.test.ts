import { describe, expect, it } from 'vitest';
import { addDays, caExpiryWarning } from './profiles.js';

describe('caExpiryWarning', () => {
  const now = new Date('2026-11-29T00:00:00Z');
  it('ok/none while the CA outlives a certificate issued now', () => {
    expect(caExpiryWarning(addDays(now, 31), 30, now)).toBeUndefined();
    expect(caExpiryWarning(addDays(now, 30), 30, now)).toBeUndefined();
  });
  it('fail/the CA ends within the device validity: when, and in how many days', () => {
    expect(caExpiryWarning(addDays(now, 3650), 7300, now)).toBe(
      'the local CA expires at 2036-11-26T00:00:00.000Z (in 3650 days), within the device validity of 7300 days: new device certificates end with it; renew the local CA before then',
    );
  });
  it('fail/an expired CA', () => {
    expect(caExpiryWarning(addDays(now, -1), 30, now)).toMatch(/^the local CA expired at 2026-11-28T/);
  });
});
