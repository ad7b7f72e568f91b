/** Building blocks for wire schemas: bounded, printable strings and stable shapes. */
import { Type, type TSchema, type TString, type StringOptions } from '@sinclair/typebox';

/** No control characters anywhere: they have no business in names, labels or reasons. */
export const PRINTABLE = '^[^\\u0000-\\u001f\\u007f]*$';

export function Text(maxLength: number, options: StringOptions = {}): TString {
  return Type.String({ maxLength, pattern: PRINTABLE, ...options });
}

export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

export const DurationText = Type.String({
  maxLength: 16,
  description: 'A duration such as 90s, 15m, 24h or 30d',
  examples: ['24h'],
});

export const Timestamp = Type.String({ maxLength: 40, description: 'RFC 3339 time, UTC' });

export const KeyIdParam = Type.Object(
  { id: Type.String({ pattern: '^key_[0-9A-Za-z]{22}$', description: 'A key id, key_ followed by 22 base62 characters' }) },
  { additionalProperties: false },
);

export const Scope = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:/*-]+$' });
export const ScopeList = Type.Array(Scope, { maxItems: 50 });

export const LABEL_NAME = '^[a-z0-9]([a-z0-9._/-]{0,62})$';
export const Labels = Type.Record(Type.String({ pattern: LABEL_NAME }), Text(256), {
  maxProperties: 50,
  // TypeBox emits patternProperties only; without this, names outside the pattern pass with any value.
  additionalProperties: false,
  description: 'key=value labels; names are lowercase letters, digits, ".", "_", "/", "-"',
});

export const IpAllowlist = Type.Array(Type.String({ maxLength: 64, pattern: '^[0-9A-Fa-f.:/]+$' }), {
  maxItems: 100,
  description: 'IPv4/IPv6 addresses or CIDR ranges',
});

export const RateLimitBody = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1_000_000_000 }),
    window: DurationText,
  },
  { additionalProperties: false },
);

export const Problem = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  code: Type.String({ description: 'Stable category: invalid_request, unauthenticated, forbidden, not_found, conflict, …' }),
  error: Type.String({ description: 'Stable error code from the registry, such as ERR_KEY_NOT_FOUND' }),
  instance: Type.Optional(Type.String()),
  requestId: Type.Optional(Type.String()),
  errors: Type.Optional(Type.Array(Type.Object({ field: Type.Optional(Type.String()), message: Type.String() }))),
});
