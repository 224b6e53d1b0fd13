import { describe, expect, it } from 'vitest';
import { renderSotaToml, type Overrides } from './sota-toml.js';

const base = {
  gateway: 'https://gw.acme.test:8443',
  ostree: 'https://ostree.acme.test:8443',
  hardwareId: 'intel-corei7-64',
  sotaConfigDir: '/var/sota',
};
const render = (overrides: Overrides = {}, extra: Partial<typeof base> = {}): string => renderSotaToml({ ...base, ...extra, overrides });

const DEFAULTS = `[tls]
server = "https://gw.acme.test:8443"
ca_source = "file"
pkey_source = "file"
cert_source = "file"

[provision]
server = "https://gw.acme.test:8443"
primary_ecu_hardware_id = "intel-corei7-64"

[uptane]
repo_server = "https://gw.acme.test:8443/repo"
key_source = "file"

[pacman]
type = "ostree+compose_apps"
ostree_server = "https://ostree.acme.test:8443/ostree"

[storage]
type = "sqlite"
path = "/var/sota/"

[import]
tls_cacert_path = "/var/sota/root.crt"
tls_pkey_path = "/var/sota/pkey.pem"
tls_clientcert_path = "/var/sota/client.pem"
`;

describe('renderSotaToml', () => {
  it('golden/defaults', () => {
    expect(render()).toBe(DEFAULTS);
  });

  it('golden/sota-config-dir is substituted into storage and import paths', () => {
    const out = render({}, { sotaConfigDir: '/data/sota' });
    expect(out).toContain('path = "/data/sota/"\n');
    expect(out).toContain(
      'tls_cacert_path = "/data/sota/root.crt"\ntls_pkey_path = "/data/sota/pkey.pem"\ntls_clientcert_path = "/data/sota/client.pem"\n',
    );
  });

  it('golden/compose-apps overrides: replaced in place, new keys appended, "" is a comment', () => {
    const out = render({
      pacman: {
        type: '"ostree+compose_apps"',
        compose_apps_root: '"/var/sota/compose-apps"',
        compose_apps: '"shellhttpd,nginx"',
        reset_apps_root: '"/var/sota/reset-apps"',
        reset_apps: '" "',
        tags: '"main"',
        ostree_server: '',
      },
    });
    expect(out).toBe(
      DEFAULTS.replace(
        '[pacman]\ntype = "ostree+compose_apps"\nostree_server = "https://ostree.acme.test:8443/ostree"\n',
        `[pacman]
type = "ostree+compose_apps"
# ostree_server is not set
compose_apps_root = "/var/sota/compose-apps"
compose_apps = "shellhttpd,nginx"
reset_apps_root = "/var/sota/reset-apps"
reset_apps = " "
tags = "main"
`,
      ),
    );
  });

  it('golden/HSM-mode overrides from lmp-device-register', () => {
    const out = render({
      tls: { pkey_source: '"pkcs11"', cert_source: '"pkcs11"' },
      storage: { tls_pkey_path: '', tls_clientcert_path: '' },
      import: { tls_pkey_path: '', tls_clientcert_path: '' },
    });
    expect(out).toContain(
      '[tls]\nserver = "https://gw.acme.test:8443"\nca_source = "file"\npkey_source = "pkcs11"\ncert_source = "pkcs11"\n\n',
    );
    expect(out).toContain(
      '[storage]\ntype = "sqlite"\npath = "/var/sota/"\n# tls_pkey_path is not set\n# tls_clientcert_path is not set\n\n',
    );
    expect(out).toContain(
      '[import]\ntls_cacert_path = "/var/sota/root.crt"\n# tls_pkey_path is not set\n# tls_clientcert_path is not set\n',
    );
    expect(out.endsWith('# tls_clientcert_path is not set\n')).toBe(true);
  });

  it('golden/new sections go at the end, in the order given', () => {
    const out = render({ logger: { loglevel: '2' }, bootloader: { reboot_command: '"/sbin/reboot"' } });
    expect(out).toBe(DEFAULTS + '\n[logger]\nloglevel = 2\n\n[bootloader]\nreboot_command = "/sbin/reboot"\n');
  });

  it('golden/braces in override values are emitted verbatim, not substituted', () => {
    const out = render({ pacman: { tags: '"{gateway_server}{"' } });
    expect(out).toContain('tags = "{gateway_server}{"\n');
  });
});
