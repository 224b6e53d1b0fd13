// Registries written before devices carried their key's hash (migration 0003): the
// hash is taken once from each device's current certificate, so a retry of a device
// registered before the upgrade is still recognised as a retry.
import type Database from 'better-sqlite3';
import { createHash, X509Certificate } from 'node:crypto';

/** SHA-256 (hex) of a certificate's SubjectPublicKeyInfo; undefined when the PEM does not parse. */
export function spkiSha256OfPem(pem: string): string | undefined {
  try {
    const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
    return createHash('sha256').update(spki).digest('hex');
  } catch {
    return undefined;
  }
}

export function backfillKeyHashes(sqlite: Database.Database): number {
  if (sqlite.readonly) return 0;
  const rows = sqlite
    .prepare<[], { uuid: string; pem: string }>(
      'SELECT d.uuid AS uuid, c.pem AS pem FROM devices d JOIN certificates c ON c.serial = d.serial WHERE d.key_sha256 IS NULL',
    )
    .all();
  if (rows.length === 0) return 0;
  const set = sqlite.prepare('UPDATE devices SET key_sha256 = ? WHERE uuid = ?');
  let n = 0;
  sqlite.transaction(() => {
    for (const r of rows) {
      const h = spkiSha256OfPem(r.pem);
      if (h) n += set.run(h, r.uuid).changes;
    }
  })();
  return n;
}
