// A PostgreSQL registry for a test: its own schema in the local server's `test` database
// (trust auth on 127.0.0.1:5432, or KILN_TEST_PG), dropped afterwards.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_BASE = process.env.KILN_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface PgSchema {
  /** a --db URL whose connections work in the schema */
  url: string;
  schema: string;
  query<T extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

export async function pgSchema(): Promise<PgSchema> {
  const schema = `kiln_t_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_BASE });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.query(`SET search_path = ${schema}`);
  return {
    url: `${PG_BASE}?options=${encodeURIComponent(`-c search_path=${schema}`)}`,
    schema,
    query: async (text, values) => (await admin.query(text, values)).rows,
    async drop() {
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    },
  };
}
