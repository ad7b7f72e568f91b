/**
 * Wire schemas of rotation policies, shared by server, SDK and CLI. The schema checks shapes
 * only; "exactly one target", schedule safety and connector/target pairing are the rotation
 * module's validator's to judge, so its messages can name the field (and, in a file, the line).
 */
import { Type, type Static } from '@sinclair/typebox';
import { DurationText, Labels, Text, Timestamp } from './common.js';
import { SECRET_PATH_MAX } from './secrets.js';

export const POLICY_NAME_PATTERN = '^[a-z0-9][a-z0-9-]{0,62}$';
export const CONNECTOR_TYPES = ['keysmith-key', 'http', 'postgres', 'command'] as const;
export type ConnectorType = (typeof CONNECTOR_TYPES)[number];
export const OVERLAP_END_ACTIONS = ['revoke', 'extend', 'keep'] as const;
export const FAILURE_ACTIONS = ['rollback', 'alert'] as const;

const strict = { additionalProperties: false } as const;

/** A string enum as one `enum` keyword (not an anyOf of consts), so a refusal can list the choices. */
function oneOf<T extends string>(values: readonly T[]) {
  return Type.Unsafe<T>({ type: 'string', enum: [...values] });
}

export const PolicyName = Type.String({ pattern: POLICY_NAME_PATTERN, description: 'Lowercase letters, digits and "-", at most 63 characters' });

export const PolicyTarget = Type.Object(
  {
    key: Type.Optional(Type.String({ maxLength: 26, description: 'One issued key, key_…' })),
    keys: Type.Optional(
      Type.Object(
        { owner: Type.Optional(Text(200, { minLength: 1 })), labels: Type.Optional(Labels) },
        { ...strict, description: 'Keys chosen by owner and/or labels' },
      ),
    ),
    secret: Type.Optional(Type.String({ maxLength: SECRET_PATH_MAX, description: 'A secret path' })),
  },
  { ...strict, description: 'Exactly one of key, keys or secret' },
);

export const PolicySchedule = Type.Object(
  {
    every: Type.Optional(DurationText),
    cron: Type.Optional(Type.String({ maxLength: 200, description: 'Five fields: minute hour day-of-month month day-of-week' })),
    window: Type.Optional(DurationText),
  },
  { ...strict, description: 'Either every, or cron with a window' },
);

export const PolicyConnector = Type.Object(
  {
    type: oneOf(CONNECTOR_TYPES),
    settings: Type.Optional(
      Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), {
        maxProperties: 50,
        description: 'Connector settings; they may name vault paths, never hold secret values',
      }),
    ),
  },
  strict,
);

export const PolicyHealthCheck = Type.Object(
  {
    url: Type.String({ maxLength: 2000 }),
    expect: Type.Optional(Type.Literal('2xx')),
    consecutive: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    within: Type.Optional(DurationText),
  },
  strict,
);

export const PolicyDeployHook = Type.Object(
  {
    url: Type.Optional(Type.String({ maxLength: 2000, description: 'POSTed a JSON notice; a 2xx answer means consumers were told' })),
    program: Type.Optional(Type.String({ minLength: 1, maxLength: 63, description: 'A program registered in the server configuration; given the notice as JSON on standard input' })),
    args: Type.Optional(Type.Array(Type.String({ maxLength: 1000 }), { maxItems: 50, description: "Extra arguments, each allowed by the program's allowArgs" })),
    timeout: Type.Optional(DurationText),
  },
  { ...strict, description: 'Tells consumers a new credential is current (a rolling deploy): exactly one of url or program' },
);

export const RotationPolicySpec = Type.Object(
  {
    name: PolicyName,
    description: Type.Optional(Text(1000)),
    target: PolicyTarget,
    schedule: PolicySchedule,
    overlap: DurationText,
    connector: PolicyConnector,
    deployHook: Type.Optional(PolicyDeployHook),
    healthChecks: Type.Optional(Type.Array(PolicyHealthCheck, { maxItems: 20 })),
    quietPeriod: Type.Optional(DurationText),
    onOverlapEnd: Type.Optional(oneOf(OVERLAP_END_ACTIONS)),
    maxExtension: Type.Optional(DurationText),
    onFailure: Type.Optional(oneOf(FAILURE_ACTIONS)),
    enabled: Type.Optional(Type.Boolean()),
  },
  strict,
);
export type RotationPolicySpecWire = Static<typeof RotationPolicySpec>;

/** The body of `PUT /v1/rotation/policies/:name`: the policy, and the version the caller last saw. */
export const PutRotationPolicyBody = Type.Object(
  {
    policy: RotationPolicySpec,
    version: Type.Optional(Type.Integer({ minimum: 0, description: 'Check-and-set: the version the caller believes is stored; 0 means it must not exist yet' })),
  },
  strict,
);
export type PutRotationPolicyBodyWire = Static<typeof PutRotationPolicyBody>;

export const PolicyNameParam = Type.Object({ name: PolicyName }, strict);

export const RotationPolicyRecordSchema = Type.Object({
  name: Type.String(),
  version: Type.Integer(),
  policy: RotationPolicySpec,
  createdAt: Timestamp,
  createdBy: Type.String(),
  updatedAt: Timestamp,
  updatedBy: Type.String(),
});
export type RotationPolicyRecordWire = Static<typeof RotationPolicyRecordSchema>;

export const PutRotationPolicyResultSchema = Type.Object({
  record: RotationPolicyRecordSchema,
  created: Type.Boolean(),
  changes: Type.Array(Type.String(), { description: 'Field paths that changed; empty when nothing did' }),
});
export type PutRotationPolicyResultWire = Static<typeof PutRotationPolicyResultSchema>;

export const RotationPolicyListSchema = Type.Object({ data: Type.Array(RotationPolicyRecordSchema) });
export type RotationPolicyListWire = Static<typeof RotationPolicyListSchema>;

export const DeleteRotationPolicyQuery = Type.Object(
  { version: Type.Optional(Type.Integer({ minimum: 1, description: 'Check-and-set: delete only if this version is stored' })) },
  strict,
);
export type DeleteRotationPolicyQueryWire = Static<typeof DeleteRotationPolicyQuery>;

export const DeletedRotationPolicySchema = Type.Object({ name: Type.String(), deleted: Type.Boolean(), version: Type.Integer({ description: 'The version that was deleted' }) });
export type DeletedRotationPolicyWire = Static<typeof DeletedRotationPolicySchema>;
