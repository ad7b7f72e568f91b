/** Wire schemas of the audit API. */
import { Type, type Static } from '@sinclair/typebox';
import { Nullable, Text } from './common.js';

export const AuditEventSchema = Type.Object({
  seq: Type.Integer(),
  time: Type.String(),
  actor: Type.String(),
  action: Type.String(),
  target: Nullable(Type.String()),
  requestId: Nullable(Type.String()),
  sourceIp: Nullable(Type.String()),
  data: Type.Record(Type.String(), Type.Unknown()),
  prevHash: Type.String(),
  hash: Type.String(),
});
export type AuditEventWire = Static<typeof AuditEventSchema>;

export const ListAuditQuery = Type.Object(
  {
    after: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647, description: 'Return events after this sequence number' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    target: Type.Optional(Text(200)),
    action: Type.Optional(Text(64)),
    actor: Type.Optional(Text(64)),
  },
  { additionalProperties: false },
);
export type ListAuditQueryWire = Static<typeof ListAuditQuery>;

export const AuditPageSchema = Type.Object({
  data: Type.Array(AuditEventSchema),
  nextCursor: Nullable(Type.Integer({ description: 'Pass as `after` for the next page' })),
});
export type AuditPageWire = Static<typeof AuditPageSchema>;

export const ChainVerificationSchema = Type.Object({
  ok: Type.Boolean(),
  events: Type.Integer(),
  headSeq: Type.Integer(),
  checkpoints: Type.Integer({ description: 'Signed checkpoints the log was held to' }),
  keyedFrom: Type.Optional(Type.Integer({ description: 'The first keyed event (the audit.chain.keyed marker)' })),
  problem: Type.Optional(
    Type.Object({
      seq: Type.Integer(),
      kind: Type.String({ description: 'edited, deleted, reordered, truncated, rewritten, unkeyed, empty, missing-head or bad-checkpoint' }),
      message: Type.String(),
      checkpoint: Type.Optional(Type.Object({ source: Type.String(), line: Type.Integer() })),
    }),
  ),
});
export type ChainVerificationWire = Static<typeof ChainVerificationSchema>;

export const CheckpointSchema = Type.Object({
  v: Type.Literal(1),
  seq: Type.Integer({ minimum: 1 }),
  hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  time: Type.String({ maxLength: 40 }),
  keyId: Type.String({ pattern: '^[0-9a-f]{16}$' }),
  sig: Type.String({ maxLength: 200 }),
});
export type CheckpointWire = Static<typeof CheckpointSchema>;

/** Checkpoints one `POST /v1/audit/verify` body may carry: each is a signature to check. */
export const MAX_REQUEST_CHECKPOINTS = 1_000;

export const VerifyAuditBody = Type.Object(
  {
    checkpoints: Type.Optional(
      Type.Array(CheckpointSchema, { maxItems: MAX_REQUEST_CHECKPOINTS, description: "Checkpoints to hold the log to, besides the server's own checkpoints file (at most 1,000)" }),
    ),
  },
  { additionalProperties: false },
);
export type VerifyAuditBodyWire = Static<typeof VerifyAuditBody>;

export const CheckpointKeySchema = Type.Object({
  keyId: Type.String(),
  algorithm: Type.Literal('Ed25519'),
  publicKey: Type.String({ description: 'The raw 32-byte public key, base64' }),
  pem: Type.String(),
  fingerprint: Type.String(),
});
export type CheckpointKeyWire = Static<typeof CheckpointKeySchema>;

export const WrittenCheckpointSchema = Type.Object({
  checkpoint: CheckpointSchema,
  /** The line as it goes into a checkpoints file. */
  line: Type.String(),
  /** Where the server wrote it (its sinks); empty when this head was already checkpointed. */
  sinks: Type.Array(Type.String()),
});
export type WrittenCheckpointWire = Static<typeof WrittenCheckpointSchema>;
