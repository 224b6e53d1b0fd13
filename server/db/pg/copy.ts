// `kilnctl db copy --from sqlite:… --to postgres://…`: moves a whole SQLite registry into
// an empty PostgreSQL one, in one transaction, table by table, then checks that every
// table holds as many rows on both sides and that the certificates' serials are the same.
import { getTableConfig, type PgTable } from 'drizzle-orm/pg-core';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { KilnError } from '../../../pki/errors.js';
import { openSqliteStore } from '../sqlite/store.js';
import { openReadOnly } from '../sqlite/backup.js';
import { pgError, redactUrl } from './errors.js';
import * as schema from './schema.js';
import { openPgStore } from './store.js';

/** Every table, in an order that inserts nothing before what it names. */
const TABLES: PgTable[] = [
  schema.lots,
  schema.devices,
  schema.certificates,
  schema.deniedDevices,
  schema.rekeyAllowances,
  schema.outbox,
  schema.upstreamPause,
  schema.approvals,
  schema.preauthorized,
  schema.adminTokens,
  schema.auditLog,
  schema.crlState,
];

export interface CopyReport {
  from: string;
  to: string;
  /** rows per table, equal on both sides */
  counts: Record<string, number>;
  /** SHA-256 of the sorted certificate serials, equal on both sides */
  serialsSha256: string;
}

const CHUNK = 500;

const serialsHash = (serials: string[]): string => createHash('sha256').update(serials.sort().join('\n')).digest('hex');

export async function copySqliteToPg(sqlitePath: string, url: string): Promise<CopyReport> {
  const to = redactUrl(url);
  // the source at the current schema (an older registry is migrated, as the server would)
  await openSqliteStore(sqlitePath, { create: false }).close();
  const src = openReadOnly(sqlitePath);
  // the target's tables, made by its migrations
  await (await openPgStore(url)).close();
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
  } catch (err) {
    src.close();
    throw pgError(err, to, 'open');
  }
  try {
    const counts: Record<string, number> = {};
    await client.query('BEGIN');
    for (const table of TABLES) {
      const { name } = getTableConfig(table);
      const [{ n }] = (await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${name}`)).rows;
      if (Number(n) > 0)
        throw new KilnError('conflict', `${to} is not empty (${name} has ${n} rows): db copy fills an empty registry only`);
    }
    // one snapshot of the source: a server writing to it meanwhile does not tear the copy
    const read = src.transaction(() =>
      TABLES.map((t) => src.prepare(`SELECT * FROM ${getTableConfig(t).name}`).all() as Record<string, unknown>[]),
    );
    const data = read();
    for (const [k, table] of TABLES.entries()) {
      const { name, columns } = getTableConfig(table);
      const rows = data[k];
      counts[name] = rows.length;
      const convert = columns.map((c) => {
        const type = c.columnType;
        return (v: unknown): unknown =>
          v === null || v === undefined ? null : type === 'PgTimestamp' ? new Date(v as number) : type === 'PgBoolean' ? Boolean(v) : v;
      });
      for (let i = 0; i < rows.length; i += CHUNK) {
        const chunk = rows.slice(i, i + CHUNK);
        const values: unknown[] = [];
        const tuples = chunk.map((row) => {
          const ph = columns.map((c, j) => {
            values.push(convert[j](row[c.name]));
            return `$${values.length}`;
          });
          return `(${ph.join(', ')})`;
        });
        await client.query(`INSERT INTO ${name} (${columns.map((c) => `"${c.name}"`).join(', ')}) VALUES ${tuples.join(', ')}`, values);
      }
    }
    // the audit log's ids go on from the copied ones
    await client.query(`SELECT setval(pg_get_serial_sequence('audit_log', 'id'), GREATEST((SELECT max(id) FROM audit_log), 1))`);
    await client.query('COMMIT');

    for (const table of TABLES) {
      const { name } = getTableConfig(table);
      const [{ n }] = (await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${name}`)).rows;
      if (Number(n) !== counts[name])
        throw new KilnError('internal', `after the copy ${name} has ${n} rows in ${to}, ${counts[name]} in ${sqlitePath}`);
    }
    const source = serialsHash((src.prepare('SELECT serial FROM certificates').all() as { serial: string }[]).map((r) => r.serial));
    const target = serialsHash((await client.query<{ serial: string }>('SELECT serial FROM certificates')).rows.map((r) => r.serial));
    if (source !== target) throw new KilnError('internal', `after the copy the certificate serials differ between ${sqlitePath} and ${to}`);
    return { from: `sqlite:${sqlitePath}`, to, counts, serialsSha256: target };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err instanceof KilnError ? err : pgError(err, to, 'use');
  } finally {
    src.close();
    await client.end().catch(() => undefined);
  }
}
