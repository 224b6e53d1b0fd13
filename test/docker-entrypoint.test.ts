// The container's entry point and Dockerfile, checked without a Docker engine.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers/pki.js';
import { freePort, ROOT, run } from './helpers/proc.js';

describe('Dockerfile', () => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');

  it('is multi-stage on Node 20, runs as non-root, with volumes, env config and a /healthz health check', () => {
    expect(text.match(/^FROM node:20-\S+/gm)).toHaveLength(2);
    expect(text).toMatch(/^USER node$/m);
    expect(text).toMatch(/^VOLUME \["\/data", "\/pki"\]$/m);
    expect(text).toMatch(/KILN_PKI_DIR=\/pki/);
    expect(text).toMatch(/KILN_DB=sqlite:\/data\/kiln.db/);
    expect(text).toMatch(/^HEALTHCHECK .*\n.*\/healthz/m);
    expect(text).toMatch(/-v \/srv\/kiln\/pki:\/pki:ro/);
  });

  it('the entry point creates a dev PKI in the data volume and serves from the environment', async () => {
    const data = tempDir('kiln-data-');
    const port = await freePort();
    const child = spawn(join(ROOT, 'scripts/docker-entrypoint'), [], {
      env: {
        ...process.env,
        KILN_HOME: ROOT,
        KILN_DATA: data,
        KILN_PKI_DIR: join(data, 'no-pki-mounted'),
        KILN_DEV_PKI: '1',
        KILN_DB: `sqlite:${join(data, 'kiln.db')}`,
        KILN_LISTEN: `127.0.0.1:${port}`,
      },
      stdio: 'ignore',
    });
    try {
      let ok = false;
      for (let i = 0; i < 100 && !ok; i++) {
        await new Promise((r) => setTimeout(r, 100));
        ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(
          (r) => r.ok,
          () => false,
        );
      }
      expect(ok).toBe(true);
      expect(existsSync(join(data, 'pki/local-ca.pem'))).toBe(true);
      expect(existsSync(join(data, 'kiln.db'))).toBe(true);
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('shellcheck -s sh passes on the entry point', () => {
    const r = run('shellcheck', ['-s', 'sh', join(ROOT, 'scripts/docker-entrypoint')]);
    expect(r.stdout + r.stderr).toBe('');
  });
});
