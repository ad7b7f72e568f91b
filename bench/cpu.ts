/**
 * CPU accounting from /proc (Linux), so a run on a shared machine says how much of the CPU
 * went to the server, to the load generator and to everything else during a measured phase.
 * Elsewhere every reading is null and the report leaves the columns out.
 */
import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux this runs on

export interface CpuSnapshot {
  readonly atMs: number;
  /** Busy and total ticks for the whole machine, then per CPU. */
  readonly all: { busy: number; total: number; steal: number };
  readonly perCpu: { busy: number; total: number; steal: number }[];
}

export function snapshot(): CpuSnapshot | null {
  try {
    const lines = readFileSync('/proc/stat', 'utf8').split('\n');
    const parse = (line: string) => {
      const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
      const busy = user! + nice! + system! + irq! + softirq!;
      return { busy, total: busy + idle! + iowait! + steal!, steal: steal! };
    };
    const all = parse(lines.find((l) => l.startsWith('cpu '))!);
    const perCpu = lines.filter((l) => /^cpu\d+ /.test(l)).map(parse);
    return { atMs: performance.now(), all, perCpu };
  } catch {
    return null;
  }
}

/** utime + stime of a process (all its threads), in seconds; null once it is gone. */
export function processCpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

export interface CpuShares {
  readonly seconds: number;
  /** Percent of one CPU. */
  readonly serverPct: number | null;
  readonly loadPct: number | null;
  /** Busy time of the whole machine not spent in the server or the load generator, in percent of one CPU. */
  readonly otherPct: number | null;
  /** Busy time on the server's own CPU (when pinned) not spent in the server, percent of that CPU. */
  readonly otherOnServerCpuPct: number | null;
  readonly stealPct: number | null;
}

export function shares(
  before: CpuSnapshot | null,
  after: CpuSnapshot | null,
  serverSeconds: number | null,
  loadSeconds: number | null,
  serverCpu: number | undefined,
): CpuShares | null {
  if (!before || !after) return null;
  const seconds = (after.atMs - before.atMs) / 1000;
  if (seconds <= 0) return null;
  const pct = (ticks: number) => (100 * ticks) / TICKS_PER_SECOND / seconds;
  const busyAll = pct(after.all.busy - before.all.busy);
  const serverPct = serverSeconds === null ? null : (100 * serverSeconds) / seconds;
  const loadPct = loadSeconds === null ? null : (100 * loadSeconds) / seconds;
  const otherPct = serverPct === null || loadPct === null ? null : Math.max(0, busyAll - serverPct - loadPct);
  let otherOnServerCpuPct: number | null = null;
  if (serverCpu !== undefined && serverPct !== null) {
    const b = before.perCpu[serverCpu];
    const a = after.perCpu[serverCpu];
    if (a && b) otherOnServerCpuPct = Math.max(0, pct(a.busy - b.busy) - serverPct);
  }
  return { seconds, serverPct, loadPct, otherPct, otherOnServerCpuPct, stealPct: pct(after.all.steal - before.all.steal) };
}
