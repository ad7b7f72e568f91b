import type { TSchema } from '@sinclair/typebox';

/** The problem+json responses every management route may give. */
export function errorResponses(problem: TSchema): Record<string, TSchema> {
  return { '4xx': problem, '5xx': problem };
}
