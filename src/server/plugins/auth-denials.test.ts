import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../shared/clock.js';
import { AuthDenialTracker, type AuthDenialOptions, type DenialEvent } from './auth-denials.js';

function tracker(options: Partial<AuthDenialOptions> = {}) {
  const clock = new ManualClock('2026-11-01T00:00:00.000Z');
  const written: DenialEvent[] = [];
  let counted = 0;
  const denials = new AuthDenialTracker({
    clock,
    options: { windowMs: 60_000, maxEntries: 100, ...options },
    write: async (event) => {
      written.push(event);
    },
    count: () => {
      counted += 1;
    },
  });
  const info = (principalId: string, requiredScope = 'keys:read', route = '/v1/keys', n = 0, requirement = requiredScope) => ({
    principalId,
    requirement,
    requiredScope,
    route,
    ip: '192.0.2.1',
    requestId: `req_${n}`,
    method: 'GET',
  });
  return { clock, written, counted: () => counted, denials, info };
}

const total = (events: readonly DenialEvent[]) => events.reduce((sum, e) => sum + e.count, 0);

describe('AuthDenialTracker', () => {
  it('writes the first denial per principal, scope and route at once and counts the rest until the window closes', async () => {
    const { clock, written, counted, denials, info } = tracker();
    for (let i = 0; i < 100; i++) await denials.deny(info('tok_a', 'keys:read', '/v1/keys', i));
    await denials.deny(info('tok_a', 'keys:write', '/v1/keys', 100));
    await denials.deny(info('tok_a', 'keys:read', '/v1/keys/:id', 101));
    await denials.deny(info('tok_b', 'keys:read', '/v1/keys', 102));
    expect(written.map((e) => [e.info.principalId, e.info.requiredScope, e.info.route, e.count])).toEqual([
      ['tok_a', 'keys:read', '/v1/keys', 1],
      ['tok_a', 'keys:write', '/v1/keys', 1],
      ['tok_a', 'keys:read', '/v1/keys/:id', 1],
      ['tok_b', 'keys:read', '/v1/keys', 1],
    ]);
    expect(counted()).toBe(103);
    denials.sweep();
    expect(written).toHaveLength(4); // the window is still open
    clock.advance(60_000);
    denials.sweep();
    await denials.close();
    expect(written.slice(4).map((e) => [e.info.principalId, e.count, e.info.requestId])).toEqual([['tok_a', 99, 'req_99']]);
    expect(written[4]!.window).toEqual({ from: '2026-11-01T00:00:00.000Z', to: '2026-11-01T00:01:00.000Z' });
    expect(total(written)).toBe(103);
    expect(denials.size).toBe(0);
  });

  it('counts a qualified scope by the route’s requirement, so a new secret path is not a new denial', async () => {
    const { written, denials, info } = tracker();
    for (let i = 0; i < 50; i++) await denials.deny(info('tok_a', `secrets:read:app/${i}`, '/v1/secrets/*', i, 'secrets:read:{path}'));
    expect(written.map((e) => [e.info.requiredScope, e.count])).toEqual([['secrets:read:app/0', 1]]);
    await denials.close();
    expect(written.map((e) => [e.info.requiredScope, e.count])).toEqual([['secrets:read:app/0', 1], ['secrets:read:app/49', 49]]);
  });

  it('a denial after the window writes the old window’s count and opens a new one', async () => {
    const { clock, written, denials, info } = tracker();
    for (let i = 0; i < 5; i++) await denials.deny(info('tok_a'));
    clock.advance(61_000);
    await denials.deny(info('tok_a'));
    expect(written.map((e) => [e.count, e.window !== undefined])).toEqual([[1, false], [4, true], [1, false]]);
  });

  it('tracks at most maxEntries, writing the counts of the one it drops', async () => {
    const { written, denials, info } = tracker({ maxEntries: 2 });
    for (let i = 0; i < 50; i++) await denials.deny(info(`tok_${i % 5}`));
    expect(denials.size).toBe(2);
    await denials.close();
    expect(total(written)).toBe(50);
  });

  it('loses no count at shutdown', async () => {
    const { written, denials, info } = tracker();
    for (let i = 0; i < 12; i++) await denials.deny(info('tok_a'));
    await denials.close();
    expect(written.map((e) => e.count)).toEqual([1, 11]);
  });
});
