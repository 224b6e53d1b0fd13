// The stored CRL as both engines read it from their crl_state row.
import type { StoredCrl } from './store.js';

interface CrlRow {
  der: Buffer | null;
  number: number;
  madeRevision: number | null;
  thisUpdate: Date | null;
  nextUpdate: Date | null;
  entries: number | null;
}

/** The CRL a crl_state row holds, once one was made. */
export const storedCrl = (r: CrlRow | undefined): StoredCrl | undefined =>
  r?.der && r.thisUpdate && r.nextUpdate
    ? {
        der: r.der,
        number: r.number,
        revision: r.madeRevision ?? 0,
        thisUpdate: r.thisUpdate,
        nextUpdate: r.nextUpdate,
        entries: r.entries ?? 0,
      }
    : undefined;

/** The crl_state columns that store a CRL (and let its maker's claim go). */
export const crlColumns = (c: StoredCrl) => ({
  der: c.der,
  thisUpdate: c.thisUpdate,
  nextUpdate: c.nextUpdate,
  madeRevision: c.revision,
  entries: c.entries,
  makingUntil: null,
});
