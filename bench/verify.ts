/**
 * `npm run bench:verify`: the verify hot path against a bare Fastify route.
 *
 * 1. Seeds a temporary SQLite data directory with --keys service keys (bench/seed.ts) and
 *    revokes a few hundred of them through KeyService.revoke.
 * 2. Starts the real server (`node dist/cli/main.js serve`), issues a gateway token with only
 *    `keys:verify` through `POST /v1/tokens`, and checks a sample of answers: valid keys answer
 *    {"valid":true,"code":"VALID"}, revoked REVOKED, malformed MALFORMED (else it aborts).
 * 3. Starts bench/baseline-server.mjs: a bare Fastify route that parses the same body and
 *    answers a constant of about the size of a real answer.
 * 4. For each round, drives each target from a separate load-generator process (bench/load.ts:
 *    wrk by default, autocannon with --tool autocannon) at --connections: a warm-up, then --duration seconds
 *    measured, with the identical rotating pool of bodies (80% valid, 10% revoked, 10%
 *    malformed) and identical headers (the Bearer gateway token included) for both targets.
 * 5. Prints requests/s, p50 and p99 for both, and the ratio; PASS when verify throughput is at
 *    least 0.85 of the baseline's, verify p99 is under 5 ms, and verify had no errors/non-2xx.
 *
 * With two or more CPUs and taskset, both servers are pinned to CPU 0 and the load generator
 * to CPU 1; --no-pin turns that off. On Linux the CPU used by the server, the load generator
 * and everything else is accounted for each measured phase, and a busy machine is reported.
 * Exit code: 0 PASS, 1 FAIL, 2 error or wrong answers.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { seed } from './seed.js';
import { buildPool, checkAnswers, primeAll, postJson, WrongAnswerError, type PoolMix } from './pool.js';
import { cleanup, hasCommand, interrupted, keepDir, removeOnExit, runToEnd, startProcess, stderrOf, stopProcess, waitForListening } from './procs.js';
import type { LoadResult, LoadSpec, LoadTool, PhaseEvent } from './load.js';
import { formatProfileSummary, summariseProfile, type ProfileSummary, type ProfileWindow } from './profile-summary.js';
import { processCpuSeconds, shares, snapshot, type CpuShares, type CpuSnapshot } from './cpu.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VERIFY_PATH = '/v1/keys/verify';
const THROUGHPUT_BAR = 0.85;
const P99_BAR_MS = 5;
const RESULT_PREFIX = 'LOAD_RESULT ';
const PHASE_PREFIX = 'LOAD_PHASE ';
/** Above this share of one CPU used by other processes during a measured phase, warn. */
const NOISE_WARN_PCT = 10;
/** Below this share of one CPU used by other processes, the machine counts as quiet. */
const QUIET_PCT = 15;

interface Options {
  durationS: number;
  warmupS: number;
  connections: number;
  keys: number;
  revoked: number;
  pool: number;
  rounds: number;
  tool: LoadTool;
  pin: boolean;
  waitQuietS: number;
  json: boolean;
  cpuProf: string | undefined;
  keep: boolean;
  fastLane: boolean;
}

const USAGE = `Usage: npm run bench:verify -- [options]

  --duration S      measured seconds per target and round (default 10; the bar needs ≥ 10)
  --warmup S        warm-up seconds before each measurement (default 3)
  --connections N   concurrent connections (default 32)
  --keys N          service keys in the database (default 100000)
  --revoked N       of which revoked (default 300)
  --pool N          distinct valid keys in the request pool (default 4000)
  --rounds N        measure each target N times, alternating, and judge the medians (default 3)
  --tool T          load generator: wrk (default; Debian's wrk: apt-get install -y wrk)
                    or autocannon (a devDependency; costs the load CPU twice as much,
                    and its latency is not corrected for coordinated omission)
  --no-pin          do not pin the servers to CPU 0 and the load generator to CPU 1
  --wait-quiet S    before each measurement wait up to S seconds for other processes to
                    use less than ${QUIET_PCT}% of a CPU (default 30; 0 = do not wait)
  --json            print the figures as JSON on stdout (progress goes to stderr)
  --cpu-prof DIR    run both servers under node --cpu-prof (profiles in DIR) and print where
                    their time went during the measured windows; figures are then not judged
  --keep            keep the temporary data directory
  --no-fast-lane    run keysmith with KEYSMITH_FAST_VERIFY=0: every verify call through the
                    Fastify route instead of the fast lane in front of it
`;

class UsageError extends Error {}
class MissingToolError extends Error {}

function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        duration: { type: 'string', default: '10' },
        warmup: { type: 'string', default: '3' },
        connections: { type: 'string', default: '32' },
        keys: { type: 'string', default: '100000' },
        revoked: { type: 'string', default: '300' },
        pool: { type: 'string', default: '4000' },
        rounds: { type: 'string', default: '3' },
        tool: { type: 'string', default: 'wrk' },
        'no-pin': { type: 'boolean', default: false },
        'wait-quiet': { type: 'string', default: '30' },
        json: { type: 'boolean', default: false },
        'cpu-prof': { type: 'string' },
        keep: { type: 'boolean', default: false },
        'no-fast-lane': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const int = (name: string, text: string, min: number) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) throw new UsageError(`--${name} must be an integer ≥ ${min} (got "${text}")`);
    return value;
  };
  const tool = values.tool;
  if (tool !== 'autocannon' && tool !== 'wrk') throw new UsageError(`--tool must be autocannon or wrk (got "${tool}")`);
  const options: Options = {
    durationS: int('duration', values.duration, 1),
    warmupS: int('warmup', values.warmup, 0),
    connections: int('connections', values.connections, 1),
    keys: int('keys', values.keys, 10),
    revoked: int('revoked', values.revoked, 1),
    pool: int('pool', values.pool, 10),
    rounds: int('rounds', values.rounds, 1),
    tool,
    pin: !values['no-pin'],
    waitQuietS: int('wait-quiet', values['wait-quiet'], 0),
    json: values.json,
    cpuProf: values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']),
    keep: values.keep,
    fastLane: !values['no-fast-lane'],
  };
  if (options.revoked >= options.keys) throw new UsageError('--revoked must be smaller than --keys');
  return options;
}

const log = (line: string) => process.stderr.write(`${line}\n`);

// ---------------------------------------------------------------- processes and load

interface Pinning {
  readonly server: number | undefined;
  readonly load: number | undefined;
  readonly description: string;
}

function choosePinning(wanted: boolean): Pinning {
  const cpus = availableParallelism();
  const none = (why: string): Pinning => ({ server: undefined, load: undefined, description: `not pinned (${why})` });
  if (!wanted) return none(`--no-pin; ${cpus} CPUs shared`);
  if (cpus < 2) return none(`only ${cpus} CPU`);
  if (!hasCommand('taskset', ['-V'])) return none('taskset not found: apt-get install -y util-linux');
  return { server: 0, load: 1, description: 'servers pinned to CPU 0, load generator to CPU 1 (taskset)' };
}

/** The children's environment: no KEYSMITH_* settings (the bench chooses), no NODE_OPTIONS. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('KEYSMITH_') && name !== 'NODE_OPTIONS') env[name] = value;
  }
  return env;
}

/** Waits until processes other than ours use less than QUIET_PCT of a CPU, for at most maxS. */
async function waitQuiet(maxS: number, label: string): Promise<number | null> {
  if (maxS <= 0) return null;
  const deadline = performance.now() + maxS * 1000;
  let said = false;
  for (;;) {
    const before = snapshot();
    await sleep(1000);
    const after = snapshot();
    if (!before || !after) return null;
    const busyPct = (after.all.busy - before.all.busy) / ((after.atMs - before.atMs) / 1000); // ticks/s = % of a CPU
    if (busyPct < QUIET_PCT) {
      if (said) log(`  quiet now (${Math.round(busyPct)}% of a CPU busy)`);
      return busyPct;
    }
    if (performance.now() > deadline) {
      log(`  the machine is still busy (${Math.round(busyPct)}% of a CPU used by other processes); measuring ${label} anyway`);
      return busyPct;
    }
    if (!said) log(`  other processes use ${Math.round(busyPct)}% of a CPU; waiting up to ${maxS} s for a quiet machine before measuring ${label} …`);
    said = true;
  }
}

interface LoadRun {
  readonly load: LoadResult;
  /** Where the CPU went during the measured phase (Linux only). */
  readonly cpu: CpuShares | null;
}

/** Runs the load generator against one target and accounts the CPU of its measured phase. */
async function runLoad(spec: LoadSpec, workDir: string, pinning: Pinning, server: ChildProcess, label: string): Promise<LoadRun> {
  const specFile = join(workDir, `load-${label}.json`);
  writeFileSync(specFile, JSON.stringify(spec));
  const child = startProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'load.ts'), specFile], {
    cwd: ROOT,
    env: childEnv(),
    cpu: pinning.load,
    label: `load generator (${label})`,
  });
  type Reading = { snap: CpuSnapshot | null; server: number | null };
  let before: Reading | undefined;
  let after: Reading | undefined;
  const onLine = (line: string) => {
    if (!line.startsWith(PHASE_PREFIX)) return;
    const event = JSON.parse(line.slice(PHASE_PREFIX.length)) as PhaseEvent;
    if (event.phase !== 'measure') return;
    const reading = { snap: snapshot(), server: processCpuSeconds(server.pid) };
    if (event.event === 'start') before = reading;
    else after = reading;
  };
  const out = await runToEnd(child, `load generator (${label})`, (spec.warmupS + spec.durationS + 60) * 1000, onLine);
  const line = out.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
  if (!line) throw new Error(`load generator (${label}) printed no result:\n${out}\n${stderrOf(child)}`);
  const load = JSON.parse(line.slice(RESULT_PREFIX.length)) as LoadResult;
  const serverSeconds = before?.server != null && after?.server != null ? after.server - before.server : null;
  const cpu = before && after ? shares(before.snap, after.snap, serverSeconds, load.measured.cpuSeconds, pinning.server) : null;
  return { load, cpu };
}

// ---------------------------------------------------------------- figures and report

interface TargetFigures {
  readonly target: string;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  readonly requests: number;
  readonly durationS: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly statusCounts: Record<string, number>;
  readonly warmupRps: number | null;
  readonly cpu: CpuShares | null;
}

function figures(target: string, run: LoadRun): TargetFigures {
  const m = run.load.measured;
  return {
    target,
    rps: m.rps,
    p50Ms: m.latencyMs.p50,
    p90Ms: m.latencyMs.p90,
    p99Ms: m.latencyMs.p99,
    p999Ms: m.latencyMs.p999,
    maxMs: m.latencyMs.max,
    requests: m.requests,
    durationS: m.durationS,
    errors: m.errors,
    timeouts: m.timeouts,
    non2xx: m.non2xx,
    statusCounts: m.statusCounts,
    warmupRps: run.load.warmup ? run.load.warmup.rps : null,
    cpu: run.cpu,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Medians of the rounds (rates and percentiles), sums of counts, mean CPU shares. */
function combine(target: string, rounds: TargetFigures[]): TargetFigures {
  if (rounds.length === 1) return { ...rounds[0]!, target };
  const med = (pick: (f: TargetFigures) => number) => median(rounds.map(pick));
  const sum = (pick: (f: TargetFigures) => number) => rounds.reduce((acc, f) => acc + pick(f), 0);
  const cpus = rounds.map((f) => f.cpu).filter((c): c is CpuShares => c !== null);
  const mean = (pick: (c: CpuShares) => number | null) => {
    const values = cpus.map(pick).filter((v): v is number => v !== null);
    return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
  };
  const statusCounts: Record<string, number> = {};
  for (const f of rounds) for (const [code, n] of Object.entries(f.statusCounts)) statusCounts[code] = (statusCounts[code] ?? 0) + n;
  return {
    target,
    rps: med((f) => f.rps),
    p50Ms: med((f) => f.p50Ms),
    p90Ms: med((f) => f.p90Ms),
    p99Ms: med((f) => f.p99Ms),
    p999Ms: med((f) => f.p999Ms),
    maxMs: Math.max(...rounds.map((f) => f.maxMs)),
    requests: sum((f) => f.requests),
    durationS: sum((f) => f.durationS),
    errors: sum((f) => f.errors),
    timeouts: sum((f) => f.timeouts),
    non2xx: sum((f) => f.non2xx),
    statusCounts,
    warmupRps: null,
    cpu:
      cpus.length === 0
        ? null
        : {
            seconds: cpus.reduce((a, c) => a + c.seconds, 0),
            serverPct: mean((c) => c.serverPct),
            loadPct: mean((c) => c.loadPct),
            otherPct: mean((c) => c.otherPct),
            otherOnServerCpuPct: mean((c) => c.otherOnServerCpuPct),
            stealPct: mean((c) => c.stealPct),
          },
  };
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const pct = (n: number | null | undefined) => (n === null || n === undefined ? 'n/a' : `${Math.round(n)}%`);

function table(rows: TargetFigures[]): string {
  const header = ['target', 'requests/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'errors', 'non-2xx', 'server CPU', 'loadgen CPU', 'other CPU'];
  const body = rows.map((r) => [
    r.target,
    int(r.rps),
    ms(r.p50Ms),
    ms(r.p90Ms),
    ms(r.p99Ms),
    ms(r.p999Ms),
    int(r.errors),
    int(r.non2xx),
    pct(r.cpu?.serverPct),
    pct(r.cpu?.loadPct),
    pct(r.cpu?.otherPct),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('   '), ...body.map(line)].join('\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const started = performance.now();
  const cli = join(ROOT, 'dist', 'cli', 'main.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" first (npm run bench:verify does)`);
  if (options.tool === 'wrk' && !hasCommand('wrk', ['--version'])) {
    throw new MissingToolError(
      'wrk is not installed, and the bench drives its load with wrk by default.\n' +
        '  Install it:  apt-get install -y wrk   (Debian/Ubuntu; brew install wrk on macOS)\n' +
        '  or run with the Node load generator instead:  npm run bench:verify -- --tool autocannon',
    );
  }
  if (options.durationS < 10) log(`note: --duration ${options.durationS} is shorter than the 10 s the bar is defined for`);
  const pinning = choosePinning(options.pin);

  const workDir = mkdtempSync(join(tmpdir(), 'keysmith-bench-'));
  if (options.keep) log(`keeping ${workDir}`);
  else removeOnExit(workDir);
  const dataDir = join(workDir, 'data');

  // 1. Seed, in this process, before the server starts.
  log(`seeding ${int(options.keys)} keys into ${dataDir} …`);
  for (const name of Object.keys(process.env)) if (name.startsWith('KEYSMITH_')) delete process.env[name];
  const seeded = await seed({ dataDir, keys: options.keys, revoke: options.revoked, log: (line) => log(`  ${line}`) });
  log(
    `  seeded in ${(seeded.seedMs / 1000).toFixed(1)} s (${int(seeded.issued)} via issue(), ${int(seeded.bulk)} bulk rows); ` +
      `revoked ${int(seeded.revoked.length)} via revoke() in ${(seeded.revokeMs / 1000).toFixed(1)} s`,
  );
  const { entries: pool, mix } = buildPool(seeded, options.pool);
  const bodiesFile = join(workDir, 'bodies.jsonl');
  writeFileSync(bodiesFile, `${pool.map((entry) => entry.body).join('\n')}\n`);

  // 2. Both servers, each pinned to the server CPU; optionally profiled.
  const profileDir = options.cpuProf;
  const profiling = (name: string) => {
    if (!profileDir) return [];
    mkdirSync(join(profileDir, name), { recursive: true });
    return ['--cpu-prof', '--cpu-prof-dir', join(profileDir, name)];
  };
  log(`starting keysmith serve${options.fastLane ? '' : ' without the verify fast lane'} and the baseline (${pinning.description}) …`);
  const server = startProcess(
    process.execPath,
    [...profiling('keysmith'), cli, 'serve', '--data', dataDir, '--addr', '127.0.0.1:0', '--log-level', 'silent', '--json'],
    { cwd: ROOT, env: { ...childEnv(), ...(options.fastLane ? {} : { KEYSMITH_FAST_VERIFY: '0' }) }, cpu: pinning.server, label: 'keysmith serve' },
  );
  const { url: serverUrl } = await waitForListening(server, 'keysmith serve');
  const rootToken = readFileSync(join(dataDir, 'root-token'), 'utf8').trim();
  const issued = await postJson(`${serverUrl}/v1/tokens`, { scopes: ['keys:verify'], purpose: 'bench gateway' }, { authorization: `Bearer ${rootToken}` });
  const gatewayToken = (issued.json as { key?: unknown }).key;
  if (issued.status !== 201 || typeof gatewayToken !== 'string') {
    throw new WrongAnswerError(`POST /v1/tokens answered ${issued.status} ${JSON.stringify(issued.json).slice(0, 300)}`);
  }
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${gatewayToken}` };
  const checkedBefore = await checkAnswers(`${serverUrl}${VERIFY_PATH}`, headers, pool, 100, 'before the load');
  log(`  keysmith ${serverUrl}: gateway token (keys:verify only) issued; ${checkedBefore} sample answers correct (VALID / REVOKED / MALFORMED)`);

  const baseline = startProcess(process.execPath, [...profiling('baseline'), join(ROOT, 'bench', 'baseline-server.mjs'), '--addr', '127.0.0.1:0'], {
    cwd: ROOT,
    env: childEnv(),
    cpu: pinning.server,
    label: 'baseline',
  });
  const { url: baselineUrl } = await waitForListening(baseline, 'baseline server');
  const probe = await postJson(`${baselineUrl}${VERIFY_PATH}`, pool[0]!.body, headers);
  if (probe.status !== 200 || (probe.json as { valid?: unknown }).valid !== true) {
    throw new WrongAnswerError(`the baseline answered ${probe.status} ${JSON.stringify(probe.json)}`);
  }
  log(`  baseline ${baselineUrl}: answers`);

  const primeStarted = performance.now();
  await primeAll(`${serverUrl}${VERIFY_PATH}`, headers, pool);
  await primeAll(`${baselineUrl}${VERIFY_PATH}`, headers, pool);
  log(`  primed both targets with every body once (${pool.length.toLocaleString('en-US')} each) in ${((performance.now() - primeStarted) / 1000).toFixed(1)} s`);

  // 3. Rounds: verify and baseline alternately (ABBA order), identical load.
  const spec = (url: string): LoadSpec => ({
    tool: options.tool,
    url,
    path: VERIFY_PATH,
    headers,
    bodiesFile,
    connections: options.connections,
    durationS: options.durationS,
    warmupS: options.warmupS,
  });
  const targets = {
    verify: { name: `POST ${VERIFY_PATH} (keysmith)`, url: serverUrl, child: server, runs: [] as LoadRun[] },
    baseline: { name: 'bare Fastify route (baseline)', url: baselineUrl, child: baseline, runs: [] as LoadRun[] },
  };
  for (let round = 1; round <= options.rounds; round++) {
    const order = round % 2 === 1 ? (['verify', 'baseline'] as const) : (['baseline', 'verify'] as const);
    for (const key of order) {
      const target = targets[key];
      const roundText = options.rounds > 1 ? ` (round ${round}/${options.rounds})` : '';
      await waitQuiet(options.waitQuietS, target.name);
      log(`driving ${target.name}${roundText} with ${options.tool}: ${options.connections} connections, ${options.warmupS} s warm-up + ${options.durationS} s …`);
      const run = await runLoad(spec(target.url), workDir, pinning, target.child, `${key}-${round}`);
      target.runs.push(run);
      log(`  ${int(run.load.measured.rps)} req/s, p99 ${ms(run.load.measured.latencyMs.p99)} ms`);
    }
  }
  const checkedAfter = await checkAnswers(`${serverUrl}${VERIFY_PATH}`, headers, pool, 20, 'after the load');
  log(`  ${checkedAfter} sample answers still correct after the load`);
  await Promise.all([stopProcess(server, 15_000), stopProcess(baseline, 15_000)]);

  // 4. Figures
  const roundName = (name: string, i: number) => (options.rounds > 1 ? `${name}, round ${i + 1}` : name);
  const verifyRounds = targets.verify.runs.map((run, i) => figures(roundName(targets.verify.name, i), run));
  const baselineRounds = targets.baseline.runs.map((run, i) => figures(roundName(targets.baseline.name, i), run));
  const verify = combine(targets.verify.name, verifyRounds);
  const bare = combine(targets.baseline.name, baselineRounds);
  const ratio = bare.rps > 0 ? verify.rps / bare.rps : 0;
  const checks = {
    throughputRatio: { value: ratio, bar: `>= ${THROUGHPUT_BAR}`, pass: ratio >= THROUGHPUT_BAR },
    verifyP99Ms: { value: verify.p99Ms, bar: `< ${P99_BAR_MS}`, pass: verify.p99Ms < P99_BAR_MS },
    verifyClean: { value: verify.errors + verify.non2xx, bar: '= 0 errors and non-2xx', pass: verify.errors === 0 && verify.non2xx === 0 },
  };
  const pass = Object.values(checks).every((c) => c.pass);
  const allRounds = [...verifyRounds, ...baselineRounds];
  const warnings = allRounds
    .filter((f) => f.cpu?.otherPct != null && f.cpu.otherPct > NOISE_WARN_PCT)
    .map((f) => `other processes used ${Math.round(f.cpu!.otherPct!)}% of a CPU while ${f.target} was measured: the machine was not quiet, figures are unreliable`);

  const profiles: { target: string; file: string; summary: ProfileSummary }[] = [];
  if (profileDir) {
    for (const [name, target] of [['keysmith', targets.verify], ['baseline', targets.baseline]] as const) {
      const dir = join(profileDir, name);
      const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
      const file = files.length > 0 ? join(dir, files[files.length - 1]!) : undefined;
      const windows: ProfileWindow[] = target.runs.map((run) => ({ startUs: run.load.measured.startMonoUs, endUs: run.load.measured.endMonoUs }));
      if (file) profiles.push({ target: name, file, summary: summariseProfile(file, 25, windows) });
      else warnings.push(`no CPU profile was written for the ${name} server in ${dir}`);
    }
  }

  const report = {
    pass: profileDir ? null : pass,
    checks,
    ratio,
    targets: { verify, baseline: bare },
    rounds: options.rounds > 1 ? { verify: verifyRounds, baseline: baselineRounds } : undefined,
    config: {
      keys: options.keys,
      revoked: seeded.revoked.length,
      connections: options.connections,
      durationS: options.durationS,
      warmupS: options.warmupS,
      rounds: options.rounds,
      tool: options.tool,
      fastLane: options.fastLane,
      latencyCorrectedForCoordinatedOmission: options.tool === 'wrk',
      pinning: pinning.description,
      cpus: availableParallelism(),
      node: process.version,
      pool: mix,
      cpuProfiles: profiles.map((p) => p.file),
    },
    seeding: {
      mode: seeded.mode,
      issued: seeded.issued,
      bulk: seeded.bulk,
      issueMsPerKey: seeded.issueMsPerKey,
      projectedIssueAllS: seeded.projectedIssueAllMs / 1000,
      seedS: seeded.seedMs / 1000,
      revokeS: seeded.revokeMs / 1000,
    },
    correctness: { checkedBefore, checkedAfter },
    warnings,
    totalS: (performance.now() - started) / 1000,
  };

  if (options.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatReport(options, pinning, mix, verify, bare, verifyRounds, baselineRounds, ratio, checks, warnings, profiles, pass)}\n`);
  }
  if (options.keep) keepDir(workDir);
  return profileDir ? 0 : pass ? 0 : 1;
}

function formatReport(
  options: Options,
  pinning: Pinning,
  mix: PoolMix,
  verify: TargetFigures,
  bare: TargetFigures,
  verifyRounds: TargetFigures[],
  baselineRounds: TargetFigures[],
  ratio: number,
  checks: Record<'throughputRatio' | 'verifyP99Ms' | 'verifyClean', { pass: boolean }>,
  warnings: string[],
  profiles: { target: string; file: string; summary: ProfileSummary }[],
  pass: boolean,
): string {
  const out: string[] = [];
  const share = (n: number) => `${Math.round((100 * n) / mix.bodies)}%`;
  out.push('');
  out.push(`Keysmith verify benchmark — SQLite, ${int(options.keys)} keys, Node ${process.version}, ${availableParallelism()} CPUs`);
  out.push(
    `load: ${options.tool} in its own process, ${options.connections} connections, ${options.warmupS} s warm-up then ${options.durationS} s measured per target` +
      `${options.rounds > 1 ? ` × ${options.rounds} rounds (medians judged)` : ''}; ${pinning.description}`,
  );
  out.push(
    options.fastLane
      ? 'keysmith: verify calls answered by the fast lane in front of Fastify where they qualify (src/server/fast-verify.ts)'
      : 'keysmith: --no-fast-lane, every verify call through the Fastify route',
  );
  out.push(
    options.tool === 'wrk'
      ? 'latency: from wrk, corrected for coordinated omission (a stall also counts for the requests the connections could not send during it)'
      : 'latency: from autocannon, as measured per response (not corrected for coordinated omission: stalls weigh less than independent clients would feel them)',
  );
  out.push(
    `bodies: ${int(mix.bodies)} rotating — ${share(mix.valid)} valid (${int(mix.distinctValidKeys)} distinct keys), ` +
      `${share(mix.revoked)} revoked (${int(mix.distinctRevokedKeys)} keys), ${share(mix.malformed)} malformed; identical bodies and headers (Bearer gateway token) for both targets`,
  );
  out.push('');
  if (options.rounds > 1) {
    const rows: TargetFigures[] = [];
    verifyRounds.forEach((f, i) => {
      rows.push({ ...f, target: `round ${i + 1}: verify` });
      rows.push({ ...baselineRounds[i]!, target: `round ${i + 1}: baseline` });
    });
    out.push(table(rows), '', 'medians:');
  }
  out.push(table([verify, bare]));
  out.push('');
  const mark = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  out.push(`throughput ratio verify/baseline: ${ratio.toFixed(3)}   (bar ≥ ${THROUGHPUT_BAR})   ${mark(checks.throughputRatio.pass)}`);
  out.push(`verify p99:                       ${ms(verify.p99Ms)} ms (bar < ${P99_BAR_MS} ms)   ${mark(checks.verifyP99Ms.pass)}`);
  out.push(`verify errors + non-2xx:          ${int(verify.errors + verify.non2xx)}       (bar = 0)      ${mark(checks.verifyClean.pass)}`);
  out.push('CPU columns: share of one CPU during the measured seconds — the server process, the load generator, all other processes.');
  for (const warning of warnings) out.push(`WARNING: ${warning}`);
  if (profiles.length > 0) {
    out.push('result: not judged (the servers ran under --cpu-prof)');
    for (const profile of profiles) {
      const detailed = profile.target === 'keysmith';
      const brief = { ...profile.summary, areas: profile.summary.areas.slice(0, 12), self: profile.summary.self.slice(0, 12), inclusive: [], app: [] };
      const text = formatProfileSummary(detailed ? profile.summary : brief);
      out.push('', `CPU profile of the ${profile.target} server, measured windows only: ${profile.file}`, text);
    }
  } else {
    out.push(`result: ${mark(pass)}`);
  }
  return out.join('\n');
}

main()
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  })
  .catch(async (error: unknown) => {
    if (interrupted()) return; // the signal handler cleans up and exits
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof UsageError) process.stderr.write(`bench:verify: ${message}\n\n${USAGE}`);
    else if (error instanceof MissingToolError) process.stderr.write(`bench:verify: ${message}\n`);
    else if (error instanceof WrongAnswerError) process.stderr.write(`bench:verify: ABORTED — wrong answer: ${message}\n`);
    else process.stderr.write(`bench:verify: ${error instanceof Error && error.stack ? error.stack : message}\n`);
    await cleanup();
    process.exit(2);
  });
