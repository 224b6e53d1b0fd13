// What HSM mode changes in the request and in sota.toml (contract §1, §2).

/** The overrides lmp-device-register adds in HSM mode (contract §1). */
export const HSM_OVERRIDES = {
  tls: { pkey_source: '"pkcs11"', cert_source: '"pkcs11"' },
  storage: { tls_pkey_path: '', tls_clientcert_path: '' },
  import: { tls_pkey_path: '', tls_clientcert_path: '' },
};

/** The [p11] section appended to sota.toml. */
export function p11Section(module: string, pin: string): string {
  const q = (s: string): string => JSON.stringify(s);
  return `\n[p11]\nmodule = ${q(module)}\npass = ${q(pin)}\ntls_pkey_id = "01"\ntls_clientcert_id = "03"\n`;
}
