/**
 * Wire schemas of rotation runs: triggering one, reading runs with their timeline, rolling one
 * back, and the figures of `rotation stats`. A run never carries a credential: it names vendor
 * ids, key ids and vault versions.
 */
import { Type, type Static } from '@sinclair/typebox';
import { DurationText, Nullable, Text } from './common.js';
import { PolicyName } from './rotation.js';
import { SECRET_PATH_MAX } from './secrets.js';

const strict = { additionalProperties: false } as const;

export const RUN_ID_PATTERN = '^rot_[0-9A-Za-z]{22}$';
const RUN_STATUS = ['running', 'done', 'failed', 'rolled_back'] as const;
const RUN_STEP = ['create', 'set', 'test', 'promote', 'deploy', 'gate', 'finish', 'discard', 'rollback'] as const;
const RUN_TRIGGER = ['schedule', 'manual', 'event', 'incident'] as const;

function oneOf<T extends string>(values: readonly T[], description?: string) {
  return Type.Unsafe<T>({ type: 'string', enum: [...values], ...(description ? { description } : {}) });
}

export const StartRotationBody = Type.Object(
  {
    policy: Type.Optional(PolicyName),
    key: Type.Optional(Type.String({ pattern: '^key_[0-9A-Za-z]{22}$', description: 'An issued key, key_…' })),
    secret: Type.Optional(Text(SECRET_PATH_MAX, { description: 'A secret path a policy rotates' })),
    reason: Type.Optional(Text(200, { minLength: 1, description: 'Why: leak, role-change, incident, …' })),
    trigger: Type.Optional(oneOf(['manual', 'event'] as const, 'manual for a person, event (the default) for automation')),
    overlap: Type.Optional(DurationText),
  },
  { ...strict, description: 'Exactly what to rotate: a policy, a key or a secret (a policy and the key it chooses)' },
);
export type StartRotationBodyWire = Static<typeof StartRotationBody>;

const Credential = Type.Object({ vendorId: Nullable(Type.String()), version: Nullable(Type.Integer()) });

export const RotationRunSchema = Type.Object({
  id: Type.String(),
  policy: Nullable(Type.String()),
  policyVersion: Nullable(Type.Integer()),
  target: Type.Object({ kind: oneOf(['key', 'secret'] as const), id: Type.String() }),
  connector: Type.String(),
  trigger: oneOf(RUN_TRIGGER),
  reason: Nullable(Type.String()),
  scheduledFor: Nullable(Type.String()),
  status: oneOf(RUN_STATUS),
  step: oneOf(RUN_STEP),
  attempts: Type.Integer(),
  nextAt: Nullable(Type.String()),
  error: Nullable(Type.String()),
  oldCredential: Credential,
  newCredential: Credential,
  deliveredTo: Nullable(Type.String({ description: 'The vault path the new credential is in' })),
  overlapEndsAt: Nullable(Type.String()),
  oldKept: Type.Boolean(),
  createdAt: Type.String(),
  createdBy: Type.String(),
  updatedAt: Type.String(),
  promotedAt: Nullable(Type.String()),
  finishedAt: Nullable(Type.String()),
});
export type RotationRunWire = Static<typeof RotationRunSchema>;

const Evidence = Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()]));

export const RotationRunDetailSchema = Type.Intersect([
  RotationRunSchema,
  Type.Object({
    timeline: Type.Array(
      Type.Object({
        seq: Type.Integer(),
        step: oneOf(RUN_STEP),
        outcome: Type.String(),
        startedAt: Type.String(),
        finishedAt: Type.String(),
        evidence: Evidence,
        error: Nullable(Type.String()),
      }),
    ),
    revocations: Type.Array(
      Type.Object({
        id: Type.String(),
        which: oneOf(['old', 'new'] as const),
        vendorId: Nullable(Type.String()),
        version: Nullable(Type.Integer()),
        status: oneOf(['waiting', 'done', 'cancelled'] as const),
        notBefore: Type.String(),
        nextAt: Type.String(),
        attempts: Type.Integer(),
        lastError: Nullable(Type.String()),
        doneAt: Nullable(Type.String()),
      }),
    ),
  }),
]);
export type RotationRunDetailWire = Static<typeof RotationRunDetailSchema>;

export const ListRotationRunsQuery = Type.Object(
  {
    status: Type.Optional(oneOf(RUN_STATUS)),
    policy: Type.Optional(PolicyName),
    target: Type.Optional(Text(SECRET_PATH_MAX)),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
  },
  strict,
);
export type ListRotationRunsQueryWire = Static<typeof ListRotationRunsQuery>;

export const RotationRunListSchema = Type.Object({ data: Type.Array(RotationRunSchema), nextCursor: Nullable(Type.String()) });
export type RotationRunListWire = Static<typeof RotationRunListSchema>;

export const RunIdParam = Type.Object({ id: Type.String({ pattern: RUN_ID_PATTERN }) }, strict);

export const RotationStatsSchema = Type.Object({
  runs: Type.Object({ running: Type.Integer(), done: Type.Integer(), failed: Type.Integer(), rolled_back: Type.Integer() }),
  successRate: Nullable(Type.Number({ description: 'Runs that ended done, of all that ended' })),
  medianSecondsToRotate: Type.Object({
    scheduled: Nullable(Type.Number()),
    incident: Nullable(Type.Number()),
    manual: Nullable(Type.Number()),
  }, { description: 'From start to the new credential being current' }),
  rolledBack: Type.Integer(),
  awaitingRevocation: Type.Integer({ description: 'Old credentials whose revocation is still owed' }),
});
export type RotationStatsWire = Static<typeof RotationStatsSchema>;
