/** The hot path: answers 200 with an outcome code; an invalid key is a value, not an error. */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Problem, VerifyKeyBody, VerifyResultSchema, type VerifyKeyBodyWire } from '../../../contract/index.js';
import type { VerifyOutcome } from '../../../keys/index.js';
import type { RouteDeps } from '../../route-deps.js';
import { errorResponses } from '../responses.js';

export function verifyKeyRoute(app: FastifyInstance, deps: RouteDeps): void {
  const { verifications, verifyDuration } = deps.metrics;
  const counters = new Map<string, { inc(): void }>();
  const counterFor = (code: string) => {
    let counter = counters.get(code);
    if (!counter) {
      counter = verifications.child({ outcome: code });
      counters.set(code, counter);
    }
    return counter;
  };
  // Most outcomes are frozen objects shared per cached row (see the verifier), so their JSON,
  // made by this route's own response serializer, is kept beside them and sent as is.
  const serialized = new WeakMap<VerifyOutcome, string>();
  const send = (reply: FastifyReply, outcome: VerifyOutcome): FastifyReply => {
    if (!Object.isFrozen(outcome)) return reply.send(outcome);
    let json = serialized.get(outcome);
    if (json === undefined) {
      json = String(reply.serialize(outcome));
      serialized.set(outcome, json);
    }
    return reply.header('content-type', 'application/json; charset=utf-8').send(json);
  };
  app.post<{ Body: VerifyKeyBodyWire }>(
    '/v1/keys/verify',
    {
      onRequest: deps.guard('keys:verify'),
      schema: {
        tags: ['keys'],
        summary: 'Verify a presented key: 200 with valid and an outcome code',
        body: VerifyKeyBody,
        response: { 200: VerifyResultSchema, ...errorResponses(Problem) },
      },
    },
    // Not async: a cached key is verified synchronously, without a promise per request.
    (request, reply) => {
      const started = performance.now();
      const body = request.body;
      const result = deps.keys.verify({
        key: body.key,
        scopes: body.scopes,
        ip: body.ip ?? request.ip,
        userAgent: body.userAgent ?? request.headers['user-agent'],
      });
      const finish = (outcome: VerifyOutcome): FastifyReply => {
        verifyDuration.observe((performance.now() - started) / 1000);
        counterFor(outcome.code).inc();
        return send(reply, outcome);
      };
      if (result instanceof Promise) return result.then(finish);
      return finish(result);
    },
  );
}
