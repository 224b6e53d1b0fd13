import { describe, expect, it } from 'vitest';
import { decodeOid, decodeOne, decodeTime, oid, time, tlv, uint, uintFromBytes, unpem, pem, readTlv, DerError } from './der.js';

describe('der', () => {
  it.each([
    '2.5.4.3',
    '1.2.840.10045.4.3.2',
    '1.3.6.1.5.5.7.3.2',
    '2.999.1234567',
    '0.39.1',
    '1.2.1125899906842623',
    '2.25.329800735698586629295641978511506172918',
  ])('ok/oid round trip %s', (o) => {
    expect(decodeOid(decodeOne(oid(o)).body)).toBe(o);
  });

  it('ok/oid encodings are the known bytes', () => {
    expect(oid('1.2.840.10045.4.3.2').toString('hex')).toBe('06082a8648ce3d040302');
    expect(oid('2.999.3').toString('hex')).toBe('0603883703');
  });

  it('ok/tlv lengths: short form below 128, long form above, parts concatenated', () => {
    expect(tlv(0x04, Buffer.from('ab', 'hex'), Buffer.from('cd', 'hex')).toString('hex')).toBe('0402abcd');
    const b127 = tlv(0x04, Buffer.alloc(127, 1));
    expect(b127.subarray(0, 2).toString('hex')).toBe('047f');
    const b128 = tlv(0x04, Buffer.alloc(100, 1), Buffer.alloc(28, 2));
    expect(b128.subarray(0, 3).toString('hex')).toBe('048180');
    expect(b128.subarray(3).equals(Buffer.concat([Buffer.alloc(100, 1), Buffer.alloc(28, 2)]))).toBe(true);
    expect(tlv(0x04, Buffer.alloc(70000)).subarray(0, 5).toString('hex')).toBe('0483011170');
    expect(decodeOne(tlv(0x30, Buffer.alloc(300))).body.length).toBe(300);
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
    expect(time(new Date('1950-01-02T03:04:05Z')).subarray(2).toString()).toBe('500102030405Z');
    expect(time(new Date('2026-11-23T09:08:07.999Z')).subarray(2).toString()).toBe('261123090807Z');
    expect(time(new Date('1949-06-30T10:00:00Z')).subarray(2).toString()).toBe('19490630100000Z');
    expect(time(new Date('9999-12-31T23:59:59Z')).subarray(2).toString()).toBe('99991231235959Z');
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
