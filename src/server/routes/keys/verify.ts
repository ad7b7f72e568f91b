/**
 * The hot path: answers 200 with an outcome code; an invalid key is a value, not an error.
 * A listening server answers most calls in the fast lane in front of Fastify
 * (../../fast-verify.ts); this route answers the rest, and every call made with `inject()`.
 */
import type { FastifyInstance } from 'fastify';
import { Problem, VerifyKeyBody, VerifyResultSchema, type VerifyKeyBodyWire } from '../../../contract/index.js';
import type { RouteDeps } from '../../route-deps.js';
import { replayBody } from '../../fast-verify.js';
import { errorResponses } from '../responses.js';
import { VERIFY_PATH, VERIFY_SCOPE } from './verify-answer.js';

const JSON_TYPE = 'application/json; charset=utf-8';

export function verifyKeyRoute(app: FastifyInstance, deps: RouteDeps): void {
  const answer = deps.answerVerify;
  app.post<{ Body: VerifyKeyBodyWire }>(
    VERIFY_PATH,
    {
      onRequest: deps.guard(VERIFY_SCOPE),
      // A request the fast lane read but would not answer comes here with its body replayed.
      preParsing: replayBody,
      schema: {
        tags: ['keys'],
        summary: 'Verify a presented key: 200 with valid and an outcome code',
        body: VerifyKeyBody,
        response: { 200: VerifyResultSchema, ...errorResponses(Problem) },
      },
    },
    // Not async: a cached key is verified synchronously, without a promise per request.
    (request, reply) => {
      const result = answer(request.body, request.ip, request.headers['user-agent']);
      if (result instanceof Promise) return result.then((json) => reply.header('content-type', JSON_TYPE).send(json));
      return reply.header('content-type', JSON_TYPE).send(result);
    },
  );
}
