import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { batchedLines, createJsonLogger } from './logger.js';

describe('batchedLines', () => {
  it('writes the lines of one event-loop turn in one write, in order, after the turn', async () => {
    const writes: string[] = [];
    const logger = createJsonLogger(batchedLines((chunk) => writes.push(chunk)));
    logger.info('a', { n: 1 });
    logger.warn('b');
    expect(writes).toEqual([]);
    await nextTurn();
    expect(writes).toHaveLength(1);
    expect(writes[0].split('\n').map((l) => l && (JSON.parse(l) as { event: string }).event)).toEqual(['a', 'b', '']);
    logger.error('c');
    await nextTurn();
    expect(writes).toHaveLength(2);
    expect(writes[1]).toContain('"event":"c"');
  });

  it('writes what is pending when the process exits in the same turn', async () => {
    const { outputFiles } = await build({
      stdin: {
        contents: `import { batchedLines, createJsonLogger } from './logger.ts';
          const logger = createJsonLogger(batchedLines((c) => process.stdout.write(c)));
          logger.info('last-words', { n: 7 });
          process.exit(3);`,
        resolveDir: join(import.meta.dirname),
        loader: 'ts',
      },
      bundle: true,
      platform: 'node',
      format: 'esm',
      write: false,
    });
    let out = '';
    try {
      execFileSync(process.execPath, ['--input-type=module', '-e', outputFiles[0].text], { encoding: 'utf8' });
    } catch (err) {
      const e = err as { status: number; stdout: string };
      expect(e.status).toBe(3);
      out = e.stdout;
    }
    expect(JSON.parse(out)).toMatchObject({ event: 'last-words', n: 7 });
  });
});
