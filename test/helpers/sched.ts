// Reads Linux scheduling policies from /proc (SCHED_OTHER 0, SCHED_BATCH 3).
import { readdirSync, readFileSync } from 'node:fs';

export const SCHED_OTHER = 0;
export const SCHED_BATCH = 3;

/** The policy field (41st) of a /proc stat file's text. */
export const policyFromStat = (stat: string): number => Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]);

const policyOf = (statFile: string): number => policyFromStat(readFileSync(statFile, 'utf8'));

/** The policy of every thread of this process. */
export const threadPolicies = (): number[] =>
  readdirSync('/proc/self/task').flatMap((t) => {
    try {
      return [policyOf(`/proc/self/task/${t}/stat`)];
    } catch {
      return []; // the thread ended while we looked
    }
  });

/** The policy of the calling thread. */
export const ownPolicy = (): number => policyOf('/proc/thread-self/stat');
