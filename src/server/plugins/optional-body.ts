/**
 * For POST routes whose body is optional (revoke, rotate, disable, …): no body at all is an
 * empty object, so defaults apply. A literal JSON `null` is not "no body" and still fails.
 * A route option rather than a global hook, so the verify hot path pays nothing for it.
 */
import type { preValidationHookHandler } from 'fastify';

export const optionalBody: preValidationHookHandler = (request, _reply, done) => {
  if (request.body === undefined) request.body = {};
  done();
};
