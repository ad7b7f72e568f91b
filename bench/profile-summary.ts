/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): where the samples fall by self time,
 * by inclusive time, and by package/area.
 *
 *   node --import tsx bench/profile-summary.ts FILE.cpuprofile [--top 25] [--window START_US:END_US]
 *
 * bench/verify.ts calls `summariseProfile` when run with `--cpu-prof DIR`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  readonly name: string;
  readonly ms: number;
  readonly percent: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  /** Samples that were not idle, as a share of all. */
  readonly busyPercent: number;
  readonly self: ProfileRow[];
  readonly inclusive: ProfileRow[];
  /** Inclusive time of the application's own functions (dist/) and of named hot spots. */
  readonly app: ProfileRow[];
  readonly areas: ProfileRow[];
}

/** Library functions worth naming on the verify path even though they are not in dist/. */
const HOT_SPOTS = /^(createHmac|randomBytes|randomFillSync|executeQuery|prepare|observe|inc|validate\d*|serialize|anonymous\d*|defaultJsonParser|writev) /;

const META = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

function frameName(frame: CallFrame): string {
  const fn = frame.functionName || '(anonymous)';
  if (!frame.url) return fn;
  const url = frame.url.replace(/^file:\/\//, '');
  const short = url.includes('/node_modules/')
    ? url.slice(url.lastIndexOf('/node_modules/') + '/node_modules/'.length)
    : url.includes('/dist/')
      ? `dist/${url.slice(url.lastIndexOf('/dist/') + '/dist/'.length)}`
      : url;
  return `${fn} ${short}:${frame.lineNumber + 1}`;
}

/** A coarse area for a frame: a package, a part of dist/, node internals or a V8 meta node. */
export function areaOf(frame: CallFrame): string {
  if (META.has(frame.functionName) && !frame.url) return frame.functionName;
  const url = frame.url;
  if (!url) return '(native / V8 builtins)';
  if (url.startsWith('node:')) {
    const mod = url.slice('node:'.length).split('/').slice(0, 2).join('/');
    return `node:${mod}`;
  }
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const dist = url.lastIndexOf('/dist/');
  if (dist >= 0) {
    const parts = url.slice(dist + '/dist/'.length).split('/');
    return `keysmith ${parts.slice(0, Math.min(parts.length - 1, 2)).join('/') || parts[0]}`;
  }
  return url;
}

/** Only samples taken in [startUs, endUs] (CLOCK_MONOTONIC microseconds, as in the profile). */
export interface ProfileWindow {
  readonly startUs: number;
  readonly endUs: number;
}

export function summariseProfile(file: string, top = 25, windows?: readonly ProfileWindow[]): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) byId.set(node.id, node);
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  // Time of sample i is the gap to the next sample (the last one gets the mean gap).
  const n = profile.samples.length;
  const total = profile.endTime - profile.startTime;
  const dt = (i: number) => (i + 1 < n ? profile.timeDeltas[i + 1]! : total / Math.max(1, n));

  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const areas = new Map<string, number>();
  let idle = 0;
  let all = 0;
  let at = profile.startTime;
  for (let i = 0; i < n; i++) {
    at += profile.timeDeltas[i]!;
    if (windows && !windows.some((w) => at >= w.startUs && at <= w.endUs)) continue;
    const us = dt(i);
    all += us;
    const leaf = byId.get(profile.samples[i]!);
    if (!leaf) continue;
    if (leaf.callFrame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const leafName = frameName(leaf.callFrame);
    self.set(leafName, (self.get(leafName) ?? 0) + us);
    const area = areaOf(leaf.callFrame);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const node = byId.get(id)!;
      if (node.callFrame.functionName === '(root)') break;
      const name = frameName(node.callFrame);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }
  const busy = all - idle;
  const rows = (map: Map<string, number>, limit: number): ProfileRow[] =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([name, us]) => ({ name, ms: us / 1000, percent: busy > 0 ? (100 * us) / busy : 0 }));
  return {
    totalMs: all / 1000,
    busyPercent: all > 0 ? (100 * busy) / all : 0,
    self: rows(self, top),
    inclusive: rows(inclusive, top * 2),
    app: rows(new Map([...inclusive].filter(([name]) => / dist\//.test(name) || HOT_SPOTS.test(name))), top * 2),
    areas: rows(areas, top),
  };
}

export function formatProfileSummary(summary: ProfileSummary): string {
  const lines: string[] = [];
  lines.push(`profile: ${(summary.totalMs / 1000).toFixed(1)} s sampled, ${summary.busyPercent.toFixed(1)}% busy; percentages are of busy time`);
  const table = (title: string, rows: ProfileRow[]) => {
    if (rows.length === 0) return;
    lines.push('', title);
    for (const row of rows) lines.push(`  ${row.percent.toFixed(1).padStart(5)}%  ${row.ms.toFixed(0).padStart(7)} ms  ${row.name}`);
  };
  table('by area (self time):', summary.areas);
  table('top functions by self time:', summary.self);
  table('application functions (dist/) and named hot spots by inclusive time:', summary.app);
  table('top functions by inclusive time:', summary.inclusive);
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node --import tsx bench/profile-summary.ts FILE.cpuprofile [--top N]\n');
    process.exit(2);
  }
  const topIndex = process.argv.indexOf('--top');
  const top = topIndex > 0 ? Number(process.argv[topIndex + 1]) : 25;
  const windowIndex = process.argv.indexOf('--window');
  const range = windowIndex > 0 ? process.argv[windowIndex + 1]?.split(':').map(Number) : undefined;
  const window = range && range.length === 2 ? { startUs: range[0]!, endUs: range[1]! } : undefined;
  process.stdout.write(`${formatProfileSummary(summariseProfile(file, top, window ? [window] : undefined))}\n`);
}
