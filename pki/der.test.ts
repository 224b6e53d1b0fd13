import { describe, expect, it } from 'vitest';
import { decodeOid, decodeOne, decodeTime, oid, time, uint, uintFromBytes, unpem, pem, readTlv, DerError } from './der.js';

describe('der', () => {
  it.each(['2.5.4.3', '1.2.840.10045.4.3.2', '1.3.6.1.5.5.7.3.2', '2.999.1234567'])('ok/oid round trip %s', (o) => {
    expect(decodeOid(decodeOne(oid(o)).body)).toBe(o);
  });

  it('ok/integers are positive and minimal', () => {
    expect(uint(0).toString('hex')).toBe('020100');
    expect(uint(127).toString('hex')).toBe('02017f');
    expect(uint(128).toString('hex')).toBe('02020080');
    expect(uintFromBytes(Buffer.from('0000ff', 'hex')).toString('hex')).toBe('020200ff');
  });

  it('ok/times switch to GeneralizedTime in 2050', () => {
    const utc = time(new Date('2049-12-31T23:59:59Z'));
    const gen = time(new Date('2050-01-01T00:00:00Z'));
    expect(utc[0]).toBe(0x17);
    expect(utc.subarray(2).toString()).toBe('491231235959Z');
    expect(gen[0]).toBe(0x18);
    expect(gen.subarray(2).toString()).toBe('20500101000000Z');
    expect(decodeTime(decodeOne(gen)).toISOString()).toBe('2050-01-01T00:00:00.000Z');
    expect(decodeTime(decodeOne(utc)).toISOString()).toBe('2049-12-31T23:59:59.000Z');
  });

  it('fail/truncated and trailing input', () => {
    expect(() => readTlv(Buffer.from('3005020100', 'hex'))).toThrow(DerError);
    expect(() => decodeOne(Buffer.from('02010000', 'hex'))).toThrow(DerError);
  });

  it('ok/pem round trip and label filter', () => {
    const der = Buffer.from('3003020101', 'hex');
    const text = pem('CERTIFICATE REQUEST', der);
    expect(unpem(text, ['CERTIFICATE REQUEST'])).toEqual(der);
    expect(unpem(text, ['CERTIFICATE'])).toBeNull();
  });
});
