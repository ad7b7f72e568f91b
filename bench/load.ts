/**
 * The load generator, run by bench/verify.ts as its own process (pinned to its own CPU when
 * pinning is on): `node --import tsx bench/load.ts SPEC.json`.
 *
 * It warms the target up, then drives it for the measured duration with the same pool of
 * request bodies (rotating), and prints one line `LOAD_RESULT {json}` on stdout.
 *
 * - wrk (the default; Debian's `wrk`): one thread, bench/load.lua rotating the bodies through
 *   one shared counter; percentiles come from wrk's microsecond histogram, corrected for
 *   coordinated omission. It needs about a third of a CPU for 12k requests/s.
 * - autocannon (`--tool autocannon`, a devDependency): each connection starts the rotation at
 *   its own offset; latency is recorded per response from autocannon's float-millisecond timing
 *   into an exact list (its HDR histogram keeps whole milliseconds only), not corrected. It
 *   needs about 0.7 of a CPU for 12k requests/s, close to what the load CPU can give.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';

export type LoadTool = 'autocannon' | 'wrk';

export interface LoadSpec {
  readonly tool: LoadTool;
  /** Origin, e.g. http://127.0.0.1:40123 */
  readonly url: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** One JSON body per line. */
  readonly bodiesFile: string;
  readonly connections: number;
  readonly durationS: number;
  readonly warmupS: number;
}

export interface LatencySummary {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

export interface PhaseResult {
  readonly requests: number;
  readonly durationS: number;
  readonly rps: number;
  readonly latencyMs: LatencySummary;
  /**
   * Whether latencyMs is corrected for coordinated omission. wrk 4 does that (`stats_correct`):
   * a response that took k expected intervals also stands for the k-1 requests its connection
   * could not send meanwhile, which is what independent clients would see during a stall.
   * autocannon's figures are the response times as measured. (Correcting autocannon's samples
   * the same way is not done: it occasionally reports multi-second staircases of latencies
   * after a server stall that the server never had, and a correction would magnify them.)
   */
  readonly latencyCorrected: boolean;
  /** Socket errors, timeouts included. */
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  /** Per status code (autocannon only; wrk reports only its non-2xx/3xx count). */
  readonly statusCounts: Record<string, number>;
  /** CPU seconds the load generator itself used in this phase (wrk's, for wrk). */
  readonly cpuSeconds: number | null;
  /** CLOCK_MONOTONIC microseconds (the clock of V8 CPU profiles) at the phase's start and end. */
  readonly startMonoUs: number;
  readonly endMonoUs: number;
}

export interface LoadResult {
  readonly tool: LoadTool;
  readonly warmup: PhaseResult | null;
  readonly measured: PhaseResult;
}

export const RESULT_PREFIX = 'LOAD_RESULT ';
export const PHASE_PREFIX = 'LOAD_PHASE ';

export interface PhaseEvent {
  readonly phase: 'warmup' | 'measure';
  readonly event: 'start' | 'end';
}

const monoUs = () => Number(process.hrtime.bigint() / 1000n);

function announce(event: PhaseEvent): void {
  process.stdout.write(`${PHASE_PREFIX}${JSON.stringify(event)}\n`);
}

type Phase = Omit<PhaseResult, 'cpuSeconds' | 'startMonoUs' | 'endMonoUs'> & { startMonoUs?: number; endMonoUs?: number };

/** Runs one phase, announcing its start and end and measuring the generator's own CPU. */
async function phase(name: PhaseEvent['phase'], spec: LoadSpec, durationS: number): Promise<PhaseResult> {
  let usage = process.cpuUsage();
  const children = childCpuSeconds();
  const before = monoUs();
  const onStart = () => {
    usage = process.cpuUsage();
    announce({ phase: name, event: 'start' });
  };
  const result: Phase = await (spec.tool === 'wrk' ? runWrk : runAutocannon)(spec, durationS, onStart);
  const startMonoUs = result.startMonoUs ?? before;
  const endMonoUs = result.endMonoUs ?? monoUs();
  announce({ phase: name, event: 'end' });
  const own = process.cpuUsage(usage);
  const childrenAfter = childCpuSeconds();
  const cpuSeconds =
    spec.tool === 'wrk'
      ? children === null || childrenAfter === null
        ? null
        : childrenAfter - children
      : (own.user + own.system) / 1e6;
  return { ...result, cpuSeconds, startMonoUs, endMonoUs };
}

/** cutime + cstime of this process: CPU of children it has reaped (wrk), in seconds. */
function childCpuSeconds(): number | null {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[13]) + Number(fields[14])) / 100;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const specFile = process.argv[2];
  if (!specFile) throw new Error('usage: load.ts SPEC.json');
  const spec = JSON.parse(readFileSync(specFile, 'utf8')) as LoadSpec;
  const warmup = spec.warmupS > 0 ? await phase('warmup', spec, spec.warmupS) : null;
  const measured = await phase('measure', spec, spec.durationS);
  const result: LoadResult = { tool: spec.tool, warmup, measured };
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
}

function readBodies(file: string): string[] {
  const bodies = readFileSync(file, 'utf8').split('\n').filter((line) => line.length > 0);
  if (bodies.length === 0) throw new Error(`no bodies in ${file}`);
  return bodies;
}

function runAutocannon(spec: LoadSpec, durationS: number, onStart: () => void): Promise<Phase> {
  const bodies = readBodies(spec.bodiesFile);
  const request = (i: number) => ({ method: 'POST', path: spec.path, headers: { ...spec.headers }, body: bodies[i]! });
  let clients = 0;
  let latencies = new Float64Array(1 << 18);
  let count = 0;
  return new Promise((resolve, reject) => {
    // Counted from autocannon's "start" (after it has built every client's request buffers,
    // which takes a while for a big pool) to its result.
    let started = NaN;
    let startMonoUs = NaN;
    const instance = autocannon(
      {
        url: spec.url,
        connections: spec.connections,
        duration: durationS,
        pipelining: 1,
        timeout: 10,
        // Each connection starts at its own offset in the pool (as wrk's one shared rotation
        // does), so the connections do not walk the pool in lock-step: any few seconds touch
        // every key in the pool, as many gateways verifying many keys would.
        requests: [request(0)],
        setupClient: (client) => {
          const offset = Math.floor((clients++ * bodies.length) / spec.connections) % bodies.length;
          client.setRequests(bodies.map((_, i) => request((i + offset) % bodies.length)));
        },
      },
      (error, result) => {
        if (error) {
          reject(error);
          return;
        }
        const endMonoUs = monoUs();
        const elapsedS = (performance.now() - started) / 1000;
        const sorted = latencies.subarray(0, count).sort();
        const statusCounts: Record<string, number> = {};
        for (const [code, stat] of Object.entries(result.statusCodeStats)) statusCounts[code] = stat.count;
        resolve({
          requests: count,
          durationS: elapsedS,
          rps: count / elapsedS,
          latencyMs: summarise(sorted),
          latencyCorrected: false,
          errors: result.errors,
          timeouts: result.timeouts,
          non2xx: result.non2xx,
          statusCounts,
          startMonoUs,
          endMonoUs,
        });
      },
    );
    instance.once('start', () => {
      started = performance.now();
      startMonoUs = monoUs();
      onStart();
    });
    instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTimeMs: number) => {
      if (count === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[count++] = responseTimeMs;
    });
  });
}

function summarise(sorted: Float64Array): LatencySummary {
  const n = sorted.length;
  const at = (q: number) => (n === 0 ? NaN : sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i]!;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: n === 0 ? NaN : sorted[n - 1]!, mean: n === 0 ? NaN : sum / n };
}

interface WrkSummary {
  requests: number;
  duration_us: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latency_us: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
}

function runWrk(spec: LoadSpec, durationS: number, onStart: () => void): Promise<Phase> {
  const script = fileURLToPath(new URL('./load.lua', import.meta.url));
  const args = ['-t1', `-c${spec.connections}`, `-d${durationS}s`, '--timeout', '10s', '-s', script];
  for (const [name, value] of Object.entries(spec.headers)) args.push('-H', `${name}: ${value}`);
  args.push(`${spec.url}${spec.path}`, '--', spec.bodiesFile);
  return new Promise((resolve, reject) => {
    onStart();
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    wrkChild = child;
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || !line) {
        reject(new Error(`wrk exited with ${code}: ${err.trim() || out.trim()}`));
        return;
      }
      const s = JSON.parse(line.slice('WRK_JSON '.length)) as WrkSummary;
      const durationSActual = s.duration_us / 1e6;
      const socketErrors = s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout;
      const ms = (us: number) => us / 1000;
      resolve({
        requests: s.requests,
        durationS: durationSActual,
        rps: s.requests / durationSActual,
        latencyMs: {
          p50: ms(s.latency_us.p50),
          p90: ms(s.latency_us.p90),
          p99: ms(s.latency_us.p99),
          p999: ms(s.latency_us.p999),
          max: ms(s.latency_us.max),
          mean: ms(s.latency_us.mean),
        },
        latencyCorrected: true,
        errors: socketErrors,
        timeouts: s.errors.timeout,
        non2xx: s.errors.status,
        statusCounts: {},
      });
    });
  });
}

// Stopped early (the bench was interrupted): stop wrk too, then leave.
let wrkChild: ReturnType<typeof spawn> | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    wrkChild?.kill('SIGTERM');
    process.exit(1);
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`load generator failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
