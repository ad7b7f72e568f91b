/** Wire schemas of the event stream (`GET /v1/events`, server-sent events). */
import { Type, type Static } from '@sinclair/typebox';
import { Nullable, Text } from './common.js';

/** Action families a stream may carry: the part of an audit action before its first dot. */
export const EVENT_FAMILIES = ['key', 'secret', 'rotation', 'incident', 'kek'] as const;
export type EventFamily = (typeof EVENT_FAMILIES)[number];

/** The `data:` of each message: exactly the audit event's public fields, never a value or a hash. */
export const StreamEventSchema = Type.Object({
  seq: Type.Integer({ description: 'The audit sequence number; also the message id' }),
  time: Type.String(),
  action: Type.String({ description: 'Also the SSE event name, e.g. key.rotated' }),
  target: Nullable(Type.String()),
  actor: Type.String(),
  data: Type.Record(Type.String(), Type.Unknown()),
});
export type StreamEventWire = Static<typeof StreamEventSchema>;

export const EventsQuery = Type.Object(
  {
    types: Type.Optional(
      Type.String({
        maxLength: 100,
        description: `Comma-separated action families to stream (${EVENT_FAMILIES.join(', ')}); all of them by default`,
        examples: ['key,rotation'],
      }),
    ),
    target: Type.Optional(Text(200, { description: 'Only events about this id (key_…, sec_…, rot_…), or secrets under this path prefix (payments/ or payments/stripe)' })),
    since: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 2_147_483_647, description: 'Replay events after this sequence number, then follow live; Last-Event-ID wins over it' }),
    ),
  },
  { additionalProperties: false },
);
export type EventsQueryWire = Static<typeof EventsQuery>;

export const EventsHeaders = Type.Object({
  'last-event-id': Type.Optional(Type.String({ maxLength: 20, description: 'The id of the last message received: resume after it' })),
});
