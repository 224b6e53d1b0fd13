// The README is the first thing a factory engineer follows: what it states must hold.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_TABLE } from '../pki/errors.js';
import { SETTINGS } from '../server/config.js';
import { ROOT } from './helpers/proc.js';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The Markdown table whose header line contains `header`, as its rows (a blank line ends it). */
function tableAfter(text: string, header: string): string[] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith('|') && l.includes(header));
  expect(start).toBeGreaterThanOrEqual(0);
  const rows: string[] = [];
  for (let i = start; i < lines.length && lines[i].startsWith('|'); i++) rows.push(lines[i]);
  return rows;
}

describe('README', () => {
  it('ok/the configuration reference is one table with every setting', () => {
    const rows = tableAfter(README, '| flag | environment | config file key |');
    for (const s of Object.values(SETTINGS)) expect(rows.some((r) => r.includes(`\`${s.env}\``) && r.includes(`\`${s.key}\``))).toBe(true);
  });

  it('ok/"register a device by hand" shows the status it promises', () => {
    const block = /## Register a device by hand[\s\S]*?```sh\n([\s\S]*?)```/.exec(README)![1];
    expect(block).toMatch(/curl -sS -w '\\nHTTP %\{http_code\}\\n'/);
    expect(README).toContain('The last line printed is `HTTP 201`');
  });

  it('ok/the stated bundle size of device-register is within 15% of the real one', () => {
    const stated = Number(/`dist\/device-register\.js`, ~(\d+) KB/.exec(README)![1]);
    const real = statSync(join(ROOT, 'dist/device-register.js')).size / 1024;
    expect(Math.abs(stated - real) / real).toBeLessThan(0.15);
  });

  it('ok/the upstream commands are not said to take flags they do not have', () => {
    expect(README).not.toMatch(/The upstream commands take `--upstream-api`/);
  });

  it('ok/the Docker section says the mounted PKI must be readable by the container user', () => {
    expect(README).toMatch(/mounted PKI must be readable by it/);
  });

  it("ok/the HSM walk-through does not take the quick start server's port or registry", () => {
    const hsm = readFileSync(join(ROOT, 'docs/hsm.md'), 'utf8');
    const serve = hsm.split('\n').find((l) => l.startsWith('./bin/kilnctl serve'))!;
    expect(serve).toMatch(/--listen 127\.0\.0\.1:(?!8000\b)\d+/);
    expect(serve).toMatch(/--db sqlite:(?!data\/kiln\.db\b)\S+/);
  });

  it('ok/every exit code kilnctl can return is in the README table', () => {
    const rows = tableAfter(README, '| exit | meaning | example |');
    for (const code of new Set([0, ...Object.values(ERROR_TABLE).map((e) => e.exit)]))
      expect(rows.some((r) => r.startsWith(`| ${code} |`))).toBe(true);
  });
});
