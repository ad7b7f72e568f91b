/** Wire schemas of the keys API, shared by the server, the SDK and the CLI. */
import { Type, type Static } from '@sinclair/typebox';
import { DurationText, IpAllowlist, Labels, Nullable, RateLimitBody, Scope, ScopeList, Text, Timestamp } from './common.js';

export const KeyEnvSchema = Type.Union([Type.Literal('live'), Type.Literal('test')]);
export const KeyStatusSchema = Type.Union([
  Type.Literal('active'),
  Type.Literal('expired'),
  Type.Literal('revoked'),
  Type.Literal('disabled'),
  Type.Literal('superseded'),
]);

export const KeyRecordSchema = Type.Object({
  id: Type.String(),
  kind: Type.Union([Type.Literal('service'), Type.Literal('management')]),
  prefix: Type.String(),
  env: KeyEnvSchema,
  status: KeyStatusSchema,
  owner: Type.String(),
  purpose: Type.String(),
  scopes: Type.Array(Type.String()),
  labels: Type.Record(Type.String(), Type.String()),
  ipAllowlist: Nullable(Type.Array(Type.String())),
  rateLimit: Nullable(Type.Object({ limit: Type.Integer(), window: Type.String() })),
  expiresAt: Type.String(),
  createdAt: Type.String(),
  createdBy: Type.String(),
  updatedAt: Type.String(),
  disabledAt: Nullable(Type.String()),
  revokedAt: Nullable(Type.String()),
  revokeReason: Nullable(Type.String()),
  replaces: Nullable(Type.String()),
  replacedBy: Nullable(Type.String()),
  graceEndsAt: Nullable(Type.String()),
  retiredAt: Nullable(Type.String()),
  lastUsedAt: Nullable(Type.String()),
});
export type KeyRecordWire = Static<typeof KeyRecordSchema>;

/** A key record with the key itself: the only response that ever carries it. */
export const IssuedKeySchema = Type.Composite([
  Type.Object({ key: Type.String({ description: 'The key. Shown once: store it now, it cannot be shown again.' }) }),
  KeyRecordSchema,
]);
export type IssuedKeyWire = Static<typeof IssuedKeySchema>;

export const CreateKeyBody = Type.Object(
  {
    owner: Text(200, { minLength: 1 }),
    purpose: Type.Optional(Text(500)),
    env: Type.Optional(KeyEnvSchema),
    prefix: Type.Optional(Type.String({ maxLength: 16 })),
    scopes: Type.Optional(ScopeList),
    labels: Type.Optional(Labels),
    ttl: Type.Optional(DurationText),
    expiresAt: Type.Optional(Timestamp),
    ipAllowlist: Type.Optional(Nullable(IpAllowlist)),
    rateLimit: Type.Optional(Nullable(RateLimitBody)),
  },
  { additionalProperties: false },
);
export type CreateKeyBodyWire = Static<typeof CreateKeyBody>;

export const UpdateKeyBody = Type.Object(
  {
    purpose: Type.Optional(Text(500)),
    labels: Type.Optional(Labels),
    scopes: Type.Optional(ScopeList),
    ipAllowlist: Type.Optional(Nullable(IpAllowlist)),
    rateLimit: Type.Optional(Nullable(RateLimitBody)),
    ttl: Type.Optional(DurationText),
    expiresAt: Type.Optional(Timestamp),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateKeyBodyWire = Static<typeof UpdateKeyBody>;

export const RotateKeyBody = Type.Object(
  {
    overlap: Type.Optional(DurationText),
    ttl: Type.Optional(DurationText),
    expiresAt: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type RotateKeyBodyWire = Static<typeof RotateKeyBody>;

export const RotatedKeySchema = Type.Composite([
  IssuedKeySchema,
  Type.Object({ previous: KeyRecordSchema }),
]);
export type RotatedKeyWire = Static<typeof RotatedKeySchema>;

export const RevokeKeyBody = Type.Object({ reason: Type.Optional(Text(500)) }, { additionalProperties: false });

export const VerifyKeyBody = Type.Object(
  {
    key: Type.String({ maxLength: 1024, description: 'The presented key; malformed text answers MALFORMED' }),
    scopes: Type.Optional(ScopeList),
    ip: Type.Optional(Type.String({ maxLength: 64, pattern: '^[0-9A-Fa-f.:]+$', description: 'The client address to check against the allowlist' })),
    userAgent: Type.Optional(Text(512)),
  },
  { additionalProperties: false },
);
export type VerifyKeyBodyWire = Static<typeof VerifyKeyBody>;

export const VerifyCodeSchema = Type.Union(
  ['VALID', 'MALFORMED', 'NOT_FOUND', 'EXPIRED', 'REVOKED', 'DISABLED', 'INSUFFICIENT_SCOPE', 'IP_NOT_ALLOWED', 'RATE_LIMITED'].map((code) =>
    Type.Literal(code),
  ),
);

export const VerifyResultSchema = Type.Object({
  valid: Type.Boolean(),
  code: Type.String(),
  keyId: Type.Optional(Type.String()),
  owner: Type.Optional(Type.String()),
  env: Type.Optional(Type.String()),
  scopes: Type.Optional(Type.Array(Type.String())),
  expiresAt: Type.Optional(Type.String()),
  rotation: Type.Optional(Type.Object({ replacedBy: Type.String(), graceEndsAt: Type.String() })),
  ratelimit: Type.Optional(Type.Object({ limit: Type.Integer(), remaining: Type.Integer(), reset: Type.String() })),
});
export type VerifyResultWire = Static<typeof VerifyResultSchema>;

export const ListKeysQuery = Type.Object(
  {
    owner: Type.Optional(Text(200)),
    env: Type.Optional(KeyEnvSchema),
    label: Type.Optional(Type.Array(Type.String({ maxLength: 330, pattern: '^[a-z0-9][a-z0-9._/-]{0,62}=[^\\u0000-\\u001f\\u007f]*$' }), { maxItems: 20 })),
    status: Type.Optional(KeyStatusSchema),
    expiringWithin: Type.Optional(DurationText),
    unusedFor: Type.Optional(DurationText),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
  },
  { additionalProperties: false },
);
export type ListKeysQueryWire = Static<typeof ListKeysQuery>;

export const KeyPageSchema = Type.Object({
  data: Type.Array(KeyRecordSchema),
  nextCursor: Nullable(Type.String()),
});
export type KeyPageWire = Static<typeof KeyPageSchema>;

export const UsageQuery = Type.Object({ since: Type.Optional(DurationText) }, { additionalProperties: false });

const Counts = Type.Record(Type.String(), Type.Integer());
export const KeyUsageSchema = Type.Object({
  keyId: Type.String(),
  since: Type.String(),
  lastUsedAt: Nullable(Type.String()),
  lastUsedIp: Nullable(Type.String()),
  lastUsedUserAgent: Nullable(Type.String()),
  totals: Counts,
  minutes: Type.Array(Type.Object({ minute: Type.String(), counts: Counts, total: Type.Integer() })),
});
export type KeyUsageWire = Static<typeof KeyUsageSchema>;

export const CreateTokenBody = Type.Object(
  {
    scopes: Type.Array(Scope, { minItems: 1, maxItems: 50 }),
    owner: Type.Optional(Text(200, { minLength: 1 })),
    purpose: Type.Optional(Text(500)),
    labels: Type.Optional(Labels),
    ttl: Type.Optional(DurationText),
    expiresAt: Type.Optional(Timestamp),
    ipAllowlist: Type.Optional(Nullable(IpAllowlist)),
  },
  { additionalProperties: false },
);
export type CreateTokenBodyWire = Static<typeof CreateTokenBody>;
