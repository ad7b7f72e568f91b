/**
 * `npm run bench:secrets`: reads of `current` through the HTTP API, and KEK re-wrap speed.
 *
 * 1. Seeds a temporary SQLite data directory with --secrets secrets of two versions each
 *    (through SecretService.put: real envelopes, real audit events), starts the real server
 *    (`node dist/cli/main.js serve`), issues a token with only `secrets:read`, and checks a
 *    sample of answers (else it aborts).
 * 2. Starts bench/baseline-server.mjs, the bare Fastify route of the verify benchmark.
 * 3. For each round, drives each target with wrk (bench/load.lua) at --connections: a warm-up,
 *    then --duration seconds measured. The vault target rotates through GET /v1/secrets/{path}
 *    of every seeded secret; the baseline gets POST /v1/keys/verify with a small JSON body.
 *    Medians over rounds; PASS when reads reach at least 0.75 of the baseline without errors.
 * 4. Re-wrap: a second data directory with --rewrap data keys (sealed by the real envelope
 *    code, inserted in bulk), then `KekService.rotate` and the re-wrap job, timed to the end.
 *    PASS at 5,000 data keys per second or more; every sampled value must still open.
 *
 * With two or more CPUs and taskset, the servers run on CPU 0 and wrk on CPU 1.
 * Exit code: 0 PASS, 1 FAIL, 2 error or wrong answers.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { resolveConfig } from '../src/app/config.js';
import { initialise } from '../src/app/init.js';
import { openServices } from '../src/app/services.js';
import { sealEnvelope } from '../src/crypto/index.js';
import { encodeValue, valueAad, versionRow } from '../src/secrets/index.js';
import { cleanup, hasCommand, removeOnExit, runToEnd, startProcess, stopProcess, waitForListening } from './procs.js';
import { postJson } from './pool.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const READ_BAR = 0.75;
const REWRAP_BAR = 5_000;

const { values: args } = parseArgs({
  options: {
    secrets: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '3' },
    rewrap: { type: 'string', default: '20000' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  process.stdout.write('npm run bench:secrets -- [--secrets 1000] [--duration 10] [--warmup 3] [--connections 32] [--rounds 1] [--rewrap 20000] [--json]\n');
  process.exit(0);
}
const opts = {
  secrets: Number(args.secrets),
  durationS: Number(args.duration),
  warmupS: Number(args.warmup),
  connections: Number(args.connections),
  rounds: Number(args.rounds),
  rewrap: Number(args.rewrap),
};
const log = (line: string) => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

interface Phase {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function runWrk(url: string, requestsFile: string, headers: Record<string, string>, durationS: number, cpu: number | undefined): Promise<Phase> {
  const header = Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
  const child = startProcess('wrk', ['-t1', `-c${opts.connections}`, `-d${durationS}s`, '--latency', ...header, '-s', join(ROOT, 'bench', 'load.lua'), url, '--', requestsFile], {
    cwd: ROOT,
    cpu,
    label: 'wrk',
  });
  const out = await runToEnd(child, 'wrk', (durationS + 30) * 1000);
  const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (line === undefined) throw new Error(`wrk printed no summary:\n${out}`);
  const parsed = JSON.parse(line.slice('WRK_JSON '.length)) as {
    requests: number;
    duration_us: number;
    errors: Record<string, number>;
    latency_us: { p50: number; p99: number };
  };
  const errors = Object.values(parsed.errors).reduce((a, b) => a + b, 0);
  return { rps: parsed.requests / (parsed.duration_us / 1e6), p50: parsed.latency_us.p50 / 1000, p99: parsed.latency_us.p99 / 1000, errors };
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

function valueOf(i: number, version: number): string {
  return `sk_live_bench_${String(i).padStart(6, '0')}_v${version}_${'x'.repeat(24)}`;
}

async function seedSecrets(dataDir: string): Promise<string> {
  const config = resolveConfig({ data: dataDir, logLevel: 'silent' }, {});
  const init = await initialise(config);
  const services = await openServices(config);
  try {
    const started = performance.now();
    for (let i = 0; i < opts.secrets; i++) {
      for (const version of [1, 2]) {
        await services.secrets.put({ actor: 'bench' }, `bench/team-${i % 16}/secret-${i}`, { value: valueOf(i, version) });
      }
    }
    log(`seeded ${opts.secrets} secrets × 2 versions in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await services.close();
  }
  if (init.rootToken === undefined) throw new Error('initialise gave no root token');
  return init.rootToken;
}

async function benchReads(pinning: { server?: number; load?: number }): Promise<{ vault: Phase; baseline: Phase; ratio: number; rounds: Array<{ vault: Phase; baseline: Phase }> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'keysmith-bench-secrets-'));
  removeOnExit(dataDir);
  const rootToken = await seedSecrets(dataDir);
  const server = startProcess(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'serve', '--data', dataDir, '--addr', '127.0.0.1:0', '--log-level', 'silent', '--json'], {
    cwd: ROOT,
    cpu: pinning.server,
    label: 'keysmith serve',
  });
  const { url: serverUrl } = await waitForListening(server, 'keysmith serve');
  const baseline = startProcess(process.execPath, [join(ROOT, 'bench', 'baseline-server.mjs'), '--addr', '127.0.0.1:0'], { cwd: ROOT, cpu: pinning.server, label: 'baseline' });
  const { url: baselineUrl } = await waitForListening(baseline, 'baseline server');
  try {
    const issued = await postJson(`${serverUrl}/v1/tokens`, { scopes: ['secrets:read'], purpose: 'bench reader' }, { authorization: `Bearer ${rootToken}` });
    if (issued.status !== 201) throw new Error(`POST /v1/tokens answered ${issued.status}`);
    // The same headers for both targets; the baseline's POST needs the JSON content type.
    const headers = { authorization: `Bearer ${(issued.json as { key: string }).key}`, 'content-type': 'application/json' };
    const paths = Array.from({ length: opts.secrets }, (_, i) => `/v1/secrets/bench/team-${i % 16}/secret-${i}`);
    for (const i of [0, Math.floor(opts.secrets / 2), opts.secrets - 1]) {
      const res = await fetch(`${serverUrl}${paths[i]}`, { headers });
      const body = (await res.json()) as { value?: unknown; version?: number };
      if (res.status !== 200 || body.value !== valueOf(i, 2) || body.version !== 2) {
        throw new Error(`GET ${paths[i]} answered ${res.status} with the wrong value or version`);
      }
    }
    const vaultFile = join(dataDir, 'vault-requests.txt');
    writeFileSync(vaultFile, `${paths.join('\n')}\n`);
    const baselineFile = join(dataDir, 'baseline-requests.txt');
    writeFileSync(baselineFile, `${JSON.stringify({ key: 'ks_live_0000000000000000000000_bench' })}\n`);
    const rounds: Array<{ vault: Phase; baseline: Phase }> = [];
    for (let round = 1; round <= opts.rounds; round++) {
      const measure = async (url: string, file: string) => {
        await runWrk(url, file, headers, opts.warmupS, pinning.load);
        return runWrk(url, file, headers, opts.durationS, pinning.load);
      };
      const vault = await measure(serverUrl, vaultFile);
      const base = await measure(`${baselineUrl}/v1/keys/verify`, baselineFile);
      log(`round ${round}: reads ${vault.rps.toFixed(0)} req/s (p99 ${vault.p99.toFixed(2)} ms), baseline ${base.rps.toFixed(0)} req/s (p99 ${base.p99.toFixed(2)} ms), ratio ${(vault.rps / base.rps).toFixed(3)}`);
      rounds.push({ vault, baseline: base });
    }
    const pick = (key: 'vault' | 'baseline'): Phase => ({
      rps: median(rounds.map((r) => r[key].rps)),
      p50: median(rounds.map((r) => r[key].p50)),
      p99: median(rounds.map((r) => r[key].p99)),
      errors: rounds.reduce((sum, r) => sum + r[key].errors, 0),
    });
    const vault = pick('vault');
    const base = pick('baseline');
    return { vault, baseline: base, ratio: vault.rps / base.rps, rounds };
  } finally {
    await stopProcess(server);
    await stopProcess(baseline);
  }
}

async function benchRewrap(): Promise<{ dataKeys: number; seconds: number; perSecond: number }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'keysmith-bench-rewrap-'));
  removeOnExit(dataDir);
  const config = resolveConfig({ data: dataDir, logLevel: 'silent' }, {});
  await initialise(config);
  const services = await openServices(config);
  try {
    const { db } = services.store;
    const perSecret = 20;
    const secrets = Math.ceil(opts.rewrap / perSecret);
    const now = new Date().toISOString();
    const provider = services.kek.provider;
    let made = 0;
    for (let s = 0; s < secrets && made < opts.rewrap; s++) {
      const id = `sec_bench${String(s).padStart(17, '0')}`;
      await db.transaction().execute(async (trx) => {
        await trx
          .insertInto('secrets')
          .values({ id, path: `rewrap/s-${s}`, owner: 'bench', description: '', labels: '{}', expires_at: null, max_versions: 100, latest_version: perSecret, created_at: now, created_by: 'bench', updated_at: now, deleted_at: null, deletion_date: null })
          .execute();
        const rows = [];
        for (let v = 1; v <= perSecret && made < opts.rewrap; v++, made++) {
          const encoded = encodeValue(valueOf(s, v));
          const envelope = await sealEnvelope(provider, 1, encoded.bytes, valueAad(id, v, encoded.type), services.random);
          rows.push(versionRow(id, v, encoded.type, envelope, { requestToken: null, digest: null, at: now, by: 'bench' }));
        }
        await trx.insertInto('secret_versions').values(rows).execute();
        await trx.insertInto('secret_stages').values({ secret_id: id, stage: 'current', version: rows.length }).execute();
      });
    }
    log(`seeded ${made} data keys under KEK version 1`);
    const started = performance.now();
    await services.kek.rotate({ actor: 'bench' });
    await services.kek.kick();
    const seconds = (performance.now() - started) / 1000;
    const status = await services.kek.status();
    if (status.rewrap.remaining !== 0 || status.versions.find((v) => v.version === status.currentVersion)?.dataKeys !== made) {
      throw new Error(`re-wrap left ${status.rewrap.remaining} data keys behind`);
    }
    for (const s of [0, Math.floor(secrets / 2), secrets - 1]) {
      const read = await services.secrets.read({ actor: 'bench' }, `rewrap/s-${s}`);
      if (read.value !== valueOf(s, read.version)) throw new Error(`rewrap/s-${s} no longer reads back`);
    }
    return { dataKeys: made, seconds, perSecond: made / seconds };
  } finally {
    await services.close();
  }
}

async function main(): Promise<number> {
  if (!hasCommand('wrk', ['-v'])) {
    process.stderr.write('wrk not found: apt-get install -y wrk\n');
    return 2;
  }
  const pinned = availableParallelism() >= 2 && hasCommand('taskset', ['-V']);
  const pinning = pinned ? { server: 0, load: 1 } : {};
  log(pinned ? 'servers pinned to CPU 0, wrk to CPU 1' : 'not pinned (fewer than 2 CPUs or no taskset)');
  const reads = await benchReads(pinning);
  const rewrap = await benchRewrap();
  const readsPass = reads.ratio >= READ_BAR && reads.vault.errors === 0;
  const rewrapPass = rewrap.perSecond >= REWRAP_BAR;
  const result = {
    reads: { ...reads, bar: READ_BAR, pass: readsPass },
    rewrap: { ...rewrap, bar: REWRAP_BAR, pass: rewrapPass },
    pass: readsPass && rewrapPass,
  };
  if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    const row = (name: string, p: Phase) => `${name.padEnd(22)} ${p.rps.toFixed(0).padStart(9)} req/s   p50 ${p.p50.toFixed(2)} ms   p99 ${p.p99.toFixed(2)} ms   errors ${p.errors}`;
    process.stdout.write(
      [
        `GET /v1/secrets/{path} (median of ${opts.rounds}, ${opts.connections} connections, ${opts.durationS} s)`,
        row('vault reads', reads.vault),
        row('bare Fastify route', reads.baseline),
        `ratio ${reads.ratio.toFixed(3)} (bar ${READ_BAR}): ${readsPass ? 'PASS' : 'FAIL'}`,
        `re-wrap: ${rewrap.dataKeys} data keys in ${rewrap.seconds.toFixed(2)} s = ${rewrap.perSecond.toFixed(0)} per second (bar ${REWRAP_BAR}): ${rewrapPass ? 'PASS' : 'FAIL'}`,
        result.pass ? 'PASS' : 'FAIL',
      ].join('\n') + '\n',
    );
  }
  return result.pass ? 0 : 1;
}

main()
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  })
  .catch(async (error: unknown) => {
    process.stderr.write(`bench:secrets failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    await cleanup();
    process.exit(2);
  });
