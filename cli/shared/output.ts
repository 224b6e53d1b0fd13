// CLI result output: JSON on request, else an aligned text table, on stdout.

export type Row = Record<string, string | number | boolean | Date | null | undefined>;

export function table<T extends object>(rows: T[], columns: [key: keyof T & string, title: string][]): string {
  const cells = rows.map((r) => columns.map(([k]) => fmt(r[k] as Row[string])));
  const widths = columns.map(([, t], i) => Math.max(t.length, ...cells.map((c) => c[i].length)));
  const line = (vals: string[]): string =>
    vals
      .map((v, i) => v.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(columns.map(([, t]) => t)), ...cells.map(line)].join('\n') + '\n';
}

const fmt = (v: Row[string]): string => (v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : String(v));

export function printResult(
  json: boolean,
  value: unknown,
  text: () => string,
  out: (s: string) => void = (s) => process.stdout.write(s),
): void {
  out(json ? JSON.stringify(value, null, 2) + '\n' : text());
}
