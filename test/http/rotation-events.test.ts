/**
 * `GET /v1/events` sees rotation runs: over a real listening socket (as in events.test.ts), a
 * stream follows a vendor-key rotation from start to its old key's revocation, on both store
 * dialects, and never carries a secret value.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { follow, type OpenStream } from '../support/sse.js';
import { describeEachDialect } from '../support/databases.js';
import { startFakeVendor, type FakeVendor } from '../support/fake-vendor.js';
import { drive, vendorRotationSetup } from '../support/rotation.js';
import { useContext } from './helpers.js';

const ADMIN = { actor: 'prn_admin' };
const SECRET_PATH = 'vendors/acme/api-key';

describeEachDialect('GET /v1/events and rotation runs', (dialect) => {
  // The fake vendor listens on 127.0.0.1: the operator lists it.
  const ctx = useContext(dialect, { events: { pollMs: 20, heartbeatMs: 150 }, egress: { allow: ['127.0.0.1:*'] } });
  let base: string;
  let vendor: FakeVendor;
  const streams: OpenStream[] = [];

  beforeAll(async () => {
    vendor = await startFakeVendor();
    await ctx().app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(ctx().app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    for (const stream of streams) stream.close();
    await vendor.close();
  });

  it('streams rotation.run.started, each rotation.run.step and rotation.run.done for a run, then its revocation, with no secret value', async () => {
    const all = await follow(base, '/v1/events', { authorization: `Bearer ${ctx().rootToken}` });
    const onlyRotation = await follow(base, '/v1/events?types=rotation', { authorization: `Bearer ${await ctx().token(['events:read'])}` });
    streams.push(all, onlyRotation);

    const { seeded } = await vendorRotationSetup(ctx(), vendor);
    const started = await ctx().rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual', reason: 'events' });
    const runId = started!.id;
    const run = await drive(ctx(), runId, { advance: true });
    expect(run.status).toBe('done');
    expect(run.revocations).toEqual([expect.objectContaining({ which: 'old', status: 'done' })]);

    const ofRun = (stream: OpenStream) => stream.events().filter((event) => event.target === runId);
    await all.until(() => ofRun(all).some((event) => event.action === 'rotation.revocation.done'));
    await onlyRotation.until(() => ofRun(onlyRotation).some((event) => event.action === 'rotation.revocation.done'));

    const events = ofRun(all);
    expect(events.map((event) => event.action)).toEqual([
      'rotation.run.started',
      'rotation.run.step',
      'rotation.run.step',
      'rotation.run.step',
      'rotation.run.step',
      'rotation.run.done',
      'rotation.revocation.done',
    ]);
    expect(events[0]).toMatchObject({ actor: ADMIN.actor, data: { policy: 'acme', target: SECRET_PATH, kind: 'secret', trigger: 'manual', reason: 'events', connector: 'http' } });
    expect(events.filter((event) => event.action === 'rotation.run.step').map((event) => [event.data.step, event.data.outcome, event.data.next])).toEqual([
      ['create', 'ok', 'set'],
      ['set', 'ok', 'test'],
      ['test', 'ok', 'promote'],
      ['promote', 'ok', 'gate'],
    ]);
    expect(events.find((event) => event.action === 'rotation.run.done')!.data).toMatchObject({ step: 'gate', revokes: 'old' });
    // In the order of the audit log.
    const seqs = events.map((event) => event.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);

    // The rotation-only stream carries the same rotation events and nothing of the secret family.
    expect(ofRun(onlyRotation).map((event) => event.seq)).toEqual(seqs);
    expect(onlyRotation.events().every((event) => event.action.startsWith('rotation.'))).toBe(true);
    expect(all.events().some((event) => event.action === 'secret.version.added')).toBe(true);

    // No value, old or new, and no admin token, in anything either stream received.
    const current = (await ctx().secrets.read(ADMIN, SECRET_PATH)).value as string;
    expect(current).not.toBe(seeded.secret);
    for (const stream of [all, onlyRotation]) {
      expect(stream.text()).not.toContain(current);
      expect(stream.text()).not.toContain(seeded.secret);
      expect(stream.text()).not.toContain(vendor.adminToken);
    }
  });
});
