/**
 * Wire schemas of break-glass incidents: mass revocation and rotation by selector. The schema
 * checks shapes; the selector's grammar is the keys module's to judge, so its refusals can name
 * the part that is wrong.
 */
import { Type, type Static } from '@sinclair/typebox';
import { DurationText, Nullable, Text, Timestamp } from './common.js';

const strict = { additionalProperties: false } as const;

export const INCIDENT_ACTIONS = ['revoke', 'rotate'] as const;
export const INCIDENT_STATUSES = ['running', 'done', 'failed'] as const;
/** How many planned keys a dry run lists; `total` always counts them all. */
export const INCIDENT_PLAN_LIST_MAX = 1_000;

export const CreateIncidentBody = Type.Object(
  {
    action: Type.Unsafe<(typeof INCIDENT_ACTIONS)[number]>({ type: 'string', enum: [...INCIDENT_ACTIONS] }),
    select: Type.String({
      minLength: 1,
      maxLength: 400_000,
      description: 'Comma-separated AND of owner=, env=, label=k=v, key=key_… and createdBefore=RFC3339; a field repeated is an OR',
      examples: ['owner=alice,env=live', 'label=team=payments,createdBefore=2026-11-01T00:00:00Z'],
    }),
    reason: Text(500, { minLength: 1, description: 'Why: kept on the incident and on every key' }),
    overlap: Type.Optional(DurationText),
    dryRun: Type.Optional(Type.Boolean({ description: 'Answer with the plan (200) and change nothing' })),
  },
  strict,
);
export type CreateIncidentBodyWire = Static<typeof CreateIncidentBody>;

export const IncidentRecordSchema = Type.Object({
  id: Type.String(),
  action: Type.String({ enum: [...INCIDENT_ACTIONS] }),
  select: Type.String({ description: 'The selector in canonical form' }),
  reason: Type.String(),
  status: Type.String({ enum: [...INCIDENT_STATUSES] }),
  keyCount: Type.Integer({ description: 'Keys revoked or rotated' }),
  plannedCount: Type.Integer({ description: 'Keys the selector picked when the incident opened' }),
  overlap: Nullable(Type.String()),
  startedAt: Timestamp,
  finishedAt: Nullable(Timestamp),
  createdBy: Type.String(),
  failure: Nullable(Type.String()),
});
export type IncidentRecordWire = Static<typeof IncidentRecordSchema>;

export const PlannedKeySchema = Type.Object({
  id: Type.String(),
  owner: Type.String(),
  env: Type.String(),
  createdAt: Timestamp,
});

export const IncidentPlanSchema = Type.Object({
  dryRun: Type.Literal(true),
  action: Type.String({ enum: [...INCIDENT_ACTIONS] }),
  select: Type.String(),
  total: Type.Integer({ description: 'Every key the selector picks' }),
  keys: Type.Array(PlannedKeySchema, { description: `The first ${INCIDENT_PLAN_LIST_MAX} of them, oldest first` }),
  truncated: Type.Boolean({ description: 'Whether keys lists fewer than total' }),
});
export type IncidentPlanWire = Static<typeof IncidentPlanSchema>;

export const IncidentRotatedKeySchema = Type.Object({
  id: Type.String(),
  replaces: Type.String(),
  key: Type.String({ description: 'The new key: shown once, never stored' }),
});
export type IncidentRotatedKeyWire = Static<typeof IncidentRotatedKeySchema>;

export const IncidentResultSchema = Type.Object({
  incident: IncidentRecordSchema,
  keys: Type.Optional(Type.Array(IncidentRotatedKeySchema, { description: 'For rotate: every successor with its key, shown once' })),
});
export type IncidentResultWire = Static<typeof IncidentResultSchema>;

export const IncidentIdParam = Type.Object(
  { id: Type.String({ pattern: '^inc_[0-9A-Za-z]{22}$', description: 'An incident id, inc_ followed by 22 base62 characters' }) },
  strict,
);

export const ListIncidentsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
  },
  strict,
);
export type ListIncidentsQueryWire = Static<typeof ListIncidentsQuery>;

export const IncidentPageSchema = Type.Object({ data: Type.Array(IncidentRecordSchema), nextCursor: Nullable(Type.String()) });
export type IncidentPageWire = Static<typeof IncidentPageSchema>;
