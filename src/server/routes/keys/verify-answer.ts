/**
 * The answer to one verify call, shared by the Fastify route and the fast lane in front of it
 * (see ../../fast-verify.ts) so both count, time and serialize it the same way. The body is the
 * route's response schema, serialized by fast-json-stringify as Fastify would, so no field
 * outside the schema can leave.
 */
import build from 'fast-json-stringify';
import { VerifyResultSchema, type VerifyKeyBodyWire } from '../../../contract/index.js';
import type { KeyService, VerifyOutcome } from '../../../keys/index.js';
import type { ServerMetrics } from '../../plugins/metrics.js';

export const VERIFY_PATH = '/v1/keys/verify';
export const VERIFY_SCOPE = 'keys:verify';

/**
 * Verifies the body's key and returns the JSON answer; synchronous when the key's row is
 * cached. `ip` and `userAgent` are the caller's, used when the body names none.
 */
export type VerifyAnswerer = (body: VerifyKeyBodyWire, ip: string | undefined, userAgent: string | undefined) => string | Promise<string>;

export function createVerifyAnswerer(deps: { readonly keys: KeyService; readonly metrics: ServerMetrics }): VerifyAnswerer {
  const { verifications, verifyDuration } = deps.metrics;
  const serialize = build(VerifyResultSchema);
  const counters = new Map<string, { inc(): void }>();
  const counterFor = (code: string) => {
    let counter = counters.get(code);
    if (!counter) {
      counter = verifications.child({ outcome: code });
      counters.set(code, counter);
    }
    return counter;
  };
  // Most outcomes are frozen objects shared per cached row (see the verifier), so their JSON
  // is kept beside them and sent as is.
  const serialized = new WeakMap<VerifyOutcome, string>();
  const json = (outcome: VerifyOutcome): string => {
    if (!Object.isFrozen(outcome)) return serialize(outcome);
    const known = serialized.get(outcome);
    if (known !== undefined) return known;
    const text: string = serialize(outcome);
    serialized.set(outcome, text);
    return text;
  };
  const finish = (outcome: VerifyOutcome, started: number): string => {
    verifyDuration.observe((performance.now() - started) / 1000);
    counterFor(outcome.code).inc();
    return json(outcome);
  };
  return (body, ip, userAgent) => {
    const started = performance.now();
    const result = deps.keys.verify({ key: body.key, scopes: body.scopes, ip: body.ip ?? ip, userAgent: body.userAgent ?? userAgent });
    return result instanceof Promise ? result.then((outcome) => finish(outcome, started)) : finish(result, started);
  };
}
