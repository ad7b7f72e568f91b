/** Wire schemas of the secret vault and its key-encryption keys, shared by server, SDK and CLI. */
import { Type, type Static } from '@sinclair/typebox';
import { DurationText, Labels, Nullable, Text, Timestamp } from './common.js';

/** Lowercase segments of letters, digits, `-`, `_`, `.`, joined by `/`. */
export const SECRET_PATH_PATTERN = '^[a-z0-9_.-]+(/[a-z0-9_.-]+)*$';
export const SECRET_PATH_MAX = 256;
/** Last segments that name an operation on the path before them, so no secret may end in one. */
export const SECRET_ACTIONS = ['versions', 'promote', 'rollback', 'stages', 'restore', 'destroy', 'readers'] as const;
export type SecretAction = (typeof SECRET_ACTIONS)[number];

export const SECRET_VALUE_MAX_BYTES = 64 * 1024;
export const RESERVED_STAGES = ['current', 'previous', 'pending'] as const;
export const STAGE_PATTERN = '^[a-z][a-z0-9_-]{0,31}$';

export const SecretPath = Type.String({ maxLength: SECRET_PATH_MAX, pattern: SECRET_PATH_PATTERN, examples: ['payments/stripe/api-key'] });
export const StageName = Type.String({ pattern: STAGE_PATTERN, description: 'current, previous, pending, or a custom stage' });
export const SecretValue = Type.Union([Type.String(), Type.Object({}, { additionalProperties: true })], {
  description: 'A string or a JSON object, at most 64 KiB',
});
const Cas = Type.Integer({ minimum: 0, description: 'The version the caller believes is current; 0 means the secret must not exist yet' });

export const PutSecretBody = Type.Object(
  {
    value: SecretValue,
    stage: Type.Optional(Type.Union([Type.Literal('current'), Type.Literal('pending')])),
    cas: Type.Optional(Cas),
    requestToken: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$' })),
    owner: Type.Optional(Text(200, { minLength: 1 })),
    description: Type.Optional(Text(1000)),
    labels: Type.Optional(Labels),
    expiresAt: Type.Optional(Nullable(Timestamp)),
    maxVersions: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    vendorId: Type.Optional(Text(200, { minLength: 1, description: "The vendor's id for this credential, so a rotation can revoke it later (metadata, never secret)" })),
  },
  { additionalProperties: false },
);
export type PutSecretBodyWire = Static<typeof PutSecretBody>;

export const PutSecretResultSchema = Type.Object({
  id: Type.String(),
  path: Type.String(),
  version: Type.Integer(),
  stages: Type.Array(Type.String()),
  created: Type.Boolean({ description: 'Whether this put created the secret' }),
  replayed: Type.Boolean({ description: 'Whether this was an earlier put with the same requestToken' }),
});
export type PutSecretResultWire = Static<typeof PutSecretResultSchema>;

export const ReadSecretQuery = Type.Object(
  {
    stage: Type.Optional(StageName),
    version: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);
export type ReadSecretQueryWire = Static<typeof ReadSecretQuery>;

export const SecretValueSchema = Type.Object({
  id: Type.String(),
  path: Type.String(),
  version: Type.Integer(),
  stages: Type.Array(Type.String()),
  value: SecretValue,
  createdAt: Type.String(),
});
export type SecretValueWire = Static<typeof SecretValueSchema>;

export const SecretMetadataSchema = Type.Object({
  id: Type.String(),
  path: Type.String(),
  owner: Type.String(),
  description: Type.String(),
  labels: Type.Record(Type.String(), Type.String()),
  expiresAt: Nullable(Type.String()),
  maxVersions: Type.Integer(),
  currentVersion: Nullable(Type.Integer()),
  stages: Type.Record(Type.String(), Type.Integer(), { description: 'stage → version' }),
  createdAt: Type.String(),
  createdBy: Type.String(),
  updatedAt: Type.String(),
  deletedAt: Nullable(Type.String()),
  deletionDate: Nullable(Type.String({ description: 'When a deleted secret is erased for good' })),
});
export type SecretMetadataWire = Static<typeof SecretMetadataSchema>;

export const SecretVersionSchema = Type.Object({
  version: Type.Integer(),
  stages: Type.Array(Type.String()),
  createdAt: Type.String(),
  createdBy: Type.String(),
  destroyedAt: Nullable(Type.String()),
  kekVersion: Type.Integer(),
  vendorId: Nullable(Type.String({ description: "The vendor's id for the credential, when a rotation connector made it" })),
});
export type SecretVersionWire = Static<typeof SecretVersionSchema>;

export const SecretVersionsSchema = Type.Object({
  secret: SecretMetadataSchema,
  versions: Type.Array(SecretVersionSchema),
});
export type SecretVersionsWire = Static<typeof SecretVersionsSchema>;

export const CasBody = Type.Object({ cas: Type.Optional(Cas) }, { additionalProperties: false });
export type CasBodyWire = Static<typeof CasBody>;

export const MoveStageBody = Type.Object(
  {
    stage: StageName,
    version: Nullable(Type.Integer({ minimum: 1, description: 'The version to put the stage on; null takes it off' })),
    cas: Type.Optional(Cas),
  },
  { additionalProperties: false },
);
export type MoveStageBodyWire = Static<typeof MoveStageBody>;

export const DeleteSecretQuery = Type.Object(
  { recoveryWindow: Type.Optional(DurationText) },
  { additionalProperties: false },
);

export const DestroyVersionsBody = Type.Object(
  { versions: Type.Array(Type.Integer({ minimum: 1 }), { minItems: 1, maxItems: 100 }) },
  { additionalProperties: false },
);
export type DestroyVersionsBodyWire = Static<typeof DestroyVersionsBody>;

export const ListSecretsQuery = Type.Object(
  {
    prefix: Type.Optional(Type.String({ maxLength: SECRET_PATH_MAX, pattern: '^[a-z0-9_./-]*$' })),
    deleted: Type.Optional(Type.Boolean({ description: 'List secrets scheduled for deletion instead' })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
  },
  { additionalProperties: false },
);
export type ListSecretsQueryWire = Static<typeof ListSecretsQuery>;

export const SecretPageSchema = Type.Object({
  data: Type.Array(SecretMetadataSchema),
  nextCursor: Nullable(Type.String()),
});
export type SecretPageWire = Static<typeof SecretPageSchema>;

export const ReadersQuery = Type.Object(
  {
    stage: Type.Optional(StageName),
    version: Type.Optional(Type.Integer({ minimum: 1 })),
    since: Type.Optional(DurationText),
  },
  { additionalProperties: false },
);
export type ReadersQueryWire = Static<typeof ReadersQuery>;

export const SecretReadersSchema = Type.Object({
  path: Type.String(),
  version: Type.Integer(),
  since: Type.String(),
  total: Type.Integer(),
  readers: Type.Array(Type.Object({ principal: Type.String(), reads: Type.Integer(), lastReadAt: Type.String() })),
});
export type SecretReadersWire = Static<typeof SecretReadersSchema>;

export const KekStatusSchema = Type.Object({
  provider: Type.String(),
  currentVersion: Type.Integer(),
  versions: Type.Array(
    Type.Object({
      version: Type.Integer(),
      state: Type.Union([Type.Literal('active'), Type.Literal('retired')]),
      createdAt: Type.String(),
      retiredAt: Nullable(Type.String()),
      dataKeys: Type.Integer({ description: 'Data keys wrapped under this version' }),
    }),
  ),
  rewrap: Type.Object({
    running: Type.Boolean(),
    toVersion: Type.Integer(),
    total: Type.Integer(),
    remaining: Type.Integer({ description: 'Data keys not yet under the current version' }),
  }),
});
export type KekStatusWire = Static<typeof KekStatusSchema>;

export const KekVersionParam = Type.Object({ version: Type.Integer({ minimum: 1 }) }, { additionalProperties: false });
