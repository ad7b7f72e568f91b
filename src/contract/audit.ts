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
  problem: Type.Optional(
    Type.Object({
      seq: Type.Integer(),
      kind: Type.String(),
      message: Type.String(),
    }),
  ),
});
export type ChainVerificationWire = Static<typeof ChainVerificationSchema>;
