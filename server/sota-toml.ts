// Renders the aktualizr-lite sota.toml a device receives (contract §3).

export type Overrides = Record<string, Record<string, string>>;

export interface SotaTomlInput {
  gateway: string;
  ostree: string;
  hardwareId: string;
  sotaConfigDir: string;
  overrides: Overrides;
}

type Sections = Map<string, Map<string, string>>;

function template(i: SotaTomlInput): Sections {
  const d = i.sotaConfigDir;
  const q = (s: string): string => `"${s}"`;
  return new Map([
    [
      'tls',
      new Map([
        ['server', q(i.gateway)],
        ['ca_source', q('file')],
        ['pkey_source', q('file')],
        ['cert_source', q('file')],
      ]),
    ],
    [
      'provision',
      new Map([
        ['server', q(i.gateway)],
        ['primary_ecu_hardware_id', q(i.hardwareId)],
      ]),
    ],
    [
      'uptane',
      new Map([
        ['repo_server', q(`${i.gateway}/repo`)],
        ['key_source', q('file')],
      ]),
    ],
    [
      'pacman',
      new Map([
        ['type', q('ostree+compose_apps')],
        ['ostree_server', q(`${i.ostree}/ostree`)],
      ]),
    ],
    [
      'storage',
      new Map([
        ['type', q('sqlite')],
        ['path', q(`${d}/`)],
      ]),
    ],
    [
      'import',
      new Map([
        ['tls_cacert_path', q(`${d}/root.crt`)],
        ['tls_pkey_path', q(`${d}/pkey.pem`)],
        ['tls_clientcert_path', q(`${d}/client.pem`)],
      ]),
    ],
  ]);
}

/**
 * Template, then overrides: an existing key is replaced in place, a new key is
 * appended to its section, a new section goes at the end. Override values are
 * emitted verbatim (they arrive TOML-quoted); unlike the reference, no `{…}`
 * substitution happens inside them. An empty value renders as a comment.
 */
export function renderSotaToml(input: SotaTomlInput): string {
  const sections = template(input);
  for (const [section, values] of Object.entries(input.overrides)) {
    let target = sections.get(section);
    if (!target) sections.set(section, (target = new Map()));
    for (const [key, value] of Object.entries(values)) target.set(key, value);
  }
  const blocks: string[] = [];
  for (const [section, values] of sections) {
    const lines = [`[${section}]`];
    for (const [key, value] of values) lines.push(value === '' ? `# ${key} is not set` : `${key} = ${value}`);
    blocks.push(lines.join('\n'));
  }
  return blocks.join('\n\n') + '\n';
}
