import { describe, expect, it } from 'vitest';
import { resolveOptions } from './options.js';
import { buildSignBody } from './request.js';

describe('buildSignBody', () => {
  it('golden/the exact bytes lmp-device-register sends', () => {
    const o = resolveOptions(
      { factory: 'acme', hwid: 'intel-corei7-64', uuid: '2b0c1f5e-3a6b-4b8e-9d0a-6f1e2d3c4b5a', apps: 'shellhttpd,nginx', tags: 'main' },
      {},
      {},
    );
    expect(buildSignBody(o, '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n')).toBe(
      '{"hardware-id":"intel-corei7-64","uuid":"2b0c1f5e-3a6b-4b8e-9d0a-6f1e2d3c4b5a","name":"2b0c1f5e-3a6b-4b8e-9d0a-6f1e2d3c4b5a",' +
        '"csr":"-----BEGIN CERTIFICATE REQUEST-----\\nMIIB\\n-----END CERTIFICATE REQUEST-----\\n","sota-config-dir":"\\/var\\/sota","use-ostree-server":"false",' +
        '"overrides":{"pacman":{"type":"\\"ostree+compose_apps\\"","compose_apps_root":"\\"\\/var\\/sota\\/compose-apps\\"","compose_apps":"\\"shellhttpd,nginx\\"",' +
        '"reset_apps_root":"\\"\\/var\\/sota\\/reset-apps\\"","reset_apps":"\\" \\"","tags":"\\"main\\""}}}',
    );
  });

  it('ok/group only when -g is given; every value is a string', () => {
    const base = { factory: 'acme', hwid: 'hw' };
    expect(JSON.parse(buildSignBody(resolveOptions(base, {}, {}), 'csr'))).not.toHaveProperty('group');
    const body = JSON.parse(buildSignBody(resolveOptions({ ...base, group: 'beta', useOstreeServer: true }, {}, {}), 'csr')) as Record<
      string,
      unknown
    >;
    expect(body.group).toBe('beta');
    expect(body['use-ostree-server']).toBe('true');
    for (const [k, v] of Object.entries(body)) if (k !== 'overrides') expect(typeof v, k).toBe('string');
  });
});
