import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { VERSION } from './version.js';

it("ok/VERSION is package.json's version", () => {
  const pkg = JSON.parse(readFileSync(join(fileURLToPath(import.meta.url), '../../package.json'), 'utf8')) as { version: string };
  expect(VERSION).toBe(pkg.version);
});
