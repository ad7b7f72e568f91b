/**
 * The outside-world checks a run makes: HTTP health checks (expecting 2xx, N consecutive times
 * within a window) and the deploy hook (a webhook or a command told that a credential changed).
 * What they record is evidence for the run's timeline: statuses, times, counts; never a body
 * that could hold a secret, never a credential. Both go only where the operator allowed: URLs
 * through the egress allowlist (on the address connected to), programs through the registry
 * (hash checked before each start). A refusal is not retried: the health gate stops probing,
 * the deploy hook fails with ERR_CONNECTOR_EGRESS_REFUSED or ERR_CONNECTOR_PROGRAM_REFUSED.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { EgressRefusedError, ProgramRefusedError, egressRequest, type Egress, type Outbound, type PreparedProgram } from '../../outbound/index.js';
import { tryParseDuration } from '../../shared/duration.js';
import { ConnectorError, scrub, tail, type StepEvidence } from '../connectors/connector.js';
import { scrubText } from '../failure.js';
import { runProgram } from '../connectors/command-connector.js';

export interface HealthCheckSpec {
  readonly url: string;
  readonly consecutive: number;
  readonly within: string;
}

export interface CheckTiming {
  /** Pause between two probes of one check. */
  readonly intervalMs: number;
  /** Per-request timeout. */
  readonly timeoutMs: number;
}

export interface ProbeAnswer {
  readonly ok: boolean;
  readonly status: number | null;
  readonly error?: string;
  /** The egress allowlist refused the host: probing again cannot help. */
  readonly refused?: boolean;
}

export async function probe(egress: Egress, url: string, timeoutMs: number, signal?: AbortSignal): Promise<ProbeAnswer> {
  try {
    // Redirects are not followed: a 3xx is not a 2xx, so it fails the probe.
    const response = await egressRequest(egress, url, { signal: deadline(timeoutMs, signal), maxBytes: 1024 });
    return { ok: response.status >= 200 && response.status < 300, status: response.status };
  } catch (error) {
    if (error instanceof EgressRefusedError) return { ok: false, status: null, error: error.message.slice(0, 200), refused: true };
    const name = error instanceof Error ? error.name : '';
    return { ok: false, status: null, error: name === 'TimeoutError' ? 'timed out' : 'no answer' };
  }
}

/** Probes each check once (the test step). */
export async function probeOnce(egress: Egress, checks: readonly HealthCheckSpec[], timing: CheckTiming, signal?: AbortSignal): Promise<{ ok: boolean; evidence: StepEvidence }> {
  const evidence: Record<string, string | number | boolean | null> = {};
  let ok = true;
  for (const [index, check] of checks.entries()) {
    const answer = await probe(egress, check.url, timing.timeoutMs, signal);
    evidence[`check${index}.status`] = answer.status;
    if (answer.error !== undefined) evidence[`check${index}.error`] = answer.error;
    ok &&= answer.ok;
  }
  return { ok, evidence };
}

/**
 * Passes when every check has answered 2xx `consecutive` times in a row before its window
 * closes; a failed probe starts that check's count again.
 */
export async function healthGate(
  egress: Egress,
  checks: readonly HealthCheckSpec[],
  timing: CheckTiming,
  now: () => number,
  signal?: AbortSignal,
): Promise<{ ok: boolean; evidence: StepEvidence }> {
  const evidence: Record<string, string | number | boolean | null> = {};
  let ok = true;
  for (const [index, check] of checks.entries()) {
    const withinMs = tryParseDuration(check.within) ?? 300_000;
    const deadline = now() + withinMs;
    // The window bounds the probes by count too, so a clock that stands still cannot loop forever.
    const maxProbes = Math.ceil(withinMs / Math.max(timing.intervalMs, 1)) + check.consecutive;
    let streak = 0;
    let probes = 0;
    let last: ProbeAnswer | undefined;
    while (streak < check.consecutive) {
      if (signal?.aborted) throw signal.reason;
      last = await probe(egress, check.url, timing.timeoutMs, signal);
      probes += 1;
      streak = last.ok ? streak + 1 : 0;
      if (last.refused || streak >= check.consecutive || now() + timing.intervalMs > deadline || probes >= maxProbes) break;
      await delay(timing.intervalMs, undefined, signal ? { signal } : {});
    }
    evidence[`check${index}.probes`] = probes;
    evidence[`check${index}.passes`] = streak;
    evidence[`check${index}.lastStatus`] = last?.status ?? null;
    if (last?.refused) evidence[`check${index}.error`] = last.error ?? 'refused';
    if (streak < check.consecutive) {
      ok = false;
      break;
    }
  }
  return { ok, evidence };
}

export interface DeployHookSpec {
  readonly url?: string | undefined;
  /** A program registered in the server configuration, and extra arguments it allows. */
  readonly program?: string | undefined;
  readonly args?: readonly string[] | undefined;
  readonly timeout?: string | undefined;
}

/**
 * Tells consumers the credential changed. The notice names the run and versions, never a value.
 * A host or program the operator did not allow throws a ConnectorError that is not retryable.
 */
export async function runDeployHook(
  outbound: Outbound,
  hook: DeployHookSpec,
  notice: Record<string, unknown>,
  secrets: readonly string[],
  signal?: AbortSignal,
): Promise<{ ok: boolean; evidence: StepEvidence }> {
  const timeoutMs = tryParseDuration(hook.timeout ?? '') ?? 30_000;
  const body = JSON.stringify(notice);
  if (hook.url !== undefined) {
    try {
      const response = await egressRequest(outbound.egress, hook.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: deadline(timeoutMs, signal), maxBytes: 1024 });
      return { ok: response.status >= 200 && response.status < 300, evidence: { hook: 'url', status: response.status } };
    } catch (error) {
      if (error instanceof EgressRefusedError) throw new ConnectorError('ERR_CONNECTOR_EGRESS_REFUSED', `the deploy hook: ${error.message}`, { connector: 'deploy-hook', retryable: false });
      return { ok: false, evidence: { hook: 'url', status: null, error: 'no answer' } };
    }
  }
  // A hook stored before programs were registered (`command: [argv…]`) is never run.
  if (hook.program === undefined) {
    throw new ConnectorError('ERR_CONNECTOR_PROGRAM_REFUSED', 'the deploy hook names no registered program (a command line is not accepted): put the policy again with deployHook.program', { connector: 'deploy-hook', retryable: false });
  }
  let prepared: PreparedProgram;
  try {
    prepared = await outbound.programs.prepare(hook.program, hook.args ?? []);
  } catch (error) {
    if (!(error instanceof ProgramRefusedError)) throw error;
    throw new ConnectorError('ERR_CONNECTOR_PROGRAM_REFUSED', `the deploy hook: ${error.message}`, { connector: 'deploy-hook', retryable: false });
  }
  const outcome = await runProgram(prepared, {}, body, timeoutMs, signal, {});
  if (outcome.spawnError !== undefined) return { ok: false, evidence: { hook: 'command', error: `could not run program ${hook.program.slice(0, 64)}` } };
  const evidence: Record<string, string | number | boolean | null> = { hook: 'command', exitCode: outcome.code };
  if (outcome.signal !== null) evidence.signal = outcome.signal;
  if (outcome.timedOut) evidence.timedOut = true;
  if (outcome.code !== 0 && outcome.stderr.trim() !== '') evidence.stderr = tail(scrubText(outcome.stderr, secrets), 300);
  return { ok: outcome.code === 0, evidence };
}

/** Aborts after `ms`, or with `signal`, whichever comes first. */
function deadline(ms: number, signal: AbortSignal | undefined): AbortSignal {
  const timeout = AbortSignal.timeout(ms);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}
