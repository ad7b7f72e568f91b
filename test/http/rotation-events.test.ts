/**
 * `GET /v1/events` sees rotation runs: over a real listening socket (as in events.test.ts), a
 * stream follows a vendor-key rotation from start to its old key's revocation, on both store
 * dialects, and never carries a secret value.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { StreamEventWire } from '../../src/contract/index.js';
import { SseParser, type SseMessage } from '../../src/sdk/index.js';
import { describeEachDialect } from '../support/databases.js';
import { startFakeVendor, type FakeVendor } from '../support/fake-vendor.js';
import { drive, vendorSettings } from '../support/rotation.js';
import { useContext } from './helpers.js';

const ADMIN = { actor: 'prn_admin' };
const SECRET_PATH = 'vendors/acme/api-key';

interface Followed {
  readonly status: number;
  text(): string;
  events(): StreamEventWire[];
  /** Resolves once `check` holds (looked at as data arrives), failing after `ms`. */
  until(check: () => boolean, ms?: number): Promise<void>;
  close(): void;
}

/** Opens a stream and waits for its opening id message: from then on every change reaches it. */
async function follow(url: string, token: string): Promise<Followed> {
  const stream = await new Promise<Followed>((resolve, reject) => {
    const req = httpRequest(url, { headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` } }, (res: IncomingMessage) => {
      const parser = new SseParser();
      const messages: SseMessage[] = [];
      let text = '';
      const waiters = new Set<() => void>();
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        messages.push(...parser.push(chunk));
        for (const waiter of [...waiters]) waiter();
      });
      resolve({
        status: res.statusCode ?? 0,
        text: () => text,
        events: () => messages.filter((m) => m.dispatch).map((m) => JSON.parse(m.data) as StreamEventWire),
        until(check, ms = 10_000) {
          if (check()) return Promise.resolve();
          return new Promise((done, fail) => {
            const timer = setTimeout(() => {
              waiters.delete(waiter);
              fail(new Error(`stream condition not met within ${ms} ms; received:\n${text}`));
            }, ms);
            const waiter = () => {
              if (!check()) return;
              clearTimeout(timer);
              waiters.delete(waiter);
              done();
            };
            waiters.add(waiter);
          });
        },
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
    req.end();
  });
  expect(stream.status, stream.text()).toBe(200);
  await stream.until(() => stream.text().includes('\n\n'));
  return stream;
}

describeEachDialect('GET /v1/events and rotation runs', (dialect) => {
  const ctx = useContext(dialect, { events: { pollMs: 20, heartbeatMs: 150 } });
  let base: string;
  let vendor: FakeVendor;
  const streams: Followed[] = [];

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
    const all = await follow(`${base}/v1/events`, ctx().rootToken);
    const onlyRotation = await follow(`${base}/v1/events?types=rotation`, await ctx().token(['events:read']));
    streams.push(all, onlyRotation);

    await ctx().secrets.put(ADMIN, 'vendors/acme/admin', { value: vendor.adminToken });
    const seeded = vendor.seedKey();
    await ctx().secrets.put(ADMIN, SECRET_PATH, { value: seeded.secret, vendorId: seeded.id });
    await ctx().rotationPolicies.put(ADMIN, 'acme', {
      name: 'acme',
      target: { secret: SECRET_PATH },
      schedule: { every: '30d' },
      overlap: '1h',
      connector: { type: 'http', settings: vendorSettings(vendor) },
    });
    const started = await ctx().rotation.trigger(ADMIN, { secret: SECRET_PATH, trigger: 'manual', reason: 'events' });
    const runId = started!.id;
    const run = await drive(ctx(), runId, { advance: true });
    expect(run.status).toBe('done');
    expect(run.revocations).toEqual([expect.objectContaining({ which: 'old', status: 'done' })]);

    const ofRun = (stream: Followed) => stream.events().filter((event) => event.target === runId);
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
