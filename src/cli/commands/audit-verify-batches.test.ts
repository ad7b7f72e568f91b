import { describe, expect, it } from 'vitest';
import type { ChainVerificationWire, CheckpointWire, VerifyAuditBodyWire } from '../../contract/index.js';
import { verifyInBatches } from './audit-verify-batches.js';

const checkpoint = (seq: number): CheckpointWire => ({ v: 1, seq, hash: '0'.repeat(64), time: '2026-11-01T00:00:00.000Z', keyId: '0'.repeat(16), sig: 'x' });

/** A server with 3 checkpoints of its own that finds checkpoint `badSeq` forged. */
function server(badSeq?: number) {
  const bodies: VerifyAuditBodyWire[] = [];
  const verify = async (body: VerifyAuditBodyWire): Promise<ChainVerificationWire> => {
    bodies.push(body);
    const given = body.checkpoints ?? [];
    const bad = given.findIndex((c) => c.seq === badSeq);
    if (bad >= 0) {
      return { ok: false, events: 10, headSeq: 10, checkpoints: 3 + bad, problem: { seq: badSeq!, kind: 'bad-checkpoint', message: 'forged', checkpoint: { source: 'request', line: bad + 1 } } };
    }
    return { ok: true, events: 10, headSeq: 10, checkpoints: 3 + given.length, keyedFrom: 1 };
  };
  return { bodies, verify };
}

describe('verifyInBatches', () => {
  it('sends at most a batch of checkpoints per call and counts them all', async () => {
    const { bodies, verify } = server();
    const result = await verifyInBatches(verify, Array.from({ length: 25 }, (_, i) => checkpoint(i + 1)), 10);
    expect(bodies.map((body) => body.checkpoints?.length)).toEqual([10, 10, 5]);
    expect(result).toMatchObject({ ok: true, checkpoints: 3 + 25 });
  });

  it('stops at the first problem and numbers its line from the start of the file', async () => {
    const { bodies, verify } = server(14);
    const result = await verifyInBatches(verify, Array.from({ length: 25 }, (_, i) => checkpoint(i + 1)), 10);
    expect(bodies).toHaveLength(2);
    expect(result).toMatchObject({ ok: false, problem: { kind: 'bad-checkpoint', checkpoint: { source: 'request', line: 14 } } });
  });

  it('sends one call without checkpoints, and one with an empty file', async () => {
    const none = server();
    expect(await verifyInBatches(none.verify, undefined)).toMatchObject({ ok: true, checkpoints: 3 });
    expect(none.bodies).toEqual([{}]);
    const empty = server();
    expect(await verifyInBatches(empty.verify, [])).toMatchObject({ ok: true, checkpoints: 3 });
    expect(empty.bodies).toEqual([{ checkpoints: [] }]);
  });
});
