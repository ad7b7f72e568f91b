import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../shared/clock.js';
import { AuthFailureTracker, addressKey, type AuthFailureOptions, type FailureEvent } from './auth-failures.js';

function tracker(options: Partial<AuthFailureOptions> = {}) {
  const clock = new ManualClock('2026-11-01T00:00:00.000Z');
  const written: FailureEvent[] = [];
  const counted: string[] = [];
  const failures = new AuthFailureTracker({
    clock,
    options: { windowMs: 60_000, limit: 20, maxAddresses: 100, ...options },
    write: async (event) => {
      written.push(event);
    },
    count: (reason) => counted.push(reason),
  });
  const info = (ip: string, reason: string, n = 0) => ({ ip, reason, target: null, requestId: `req_${n}`, method: 'GET', route: '/v1/keys' });
  return { clock, written, counted, failures, info };
}

const total = (events: readonly FailureEvent[], ip?: string) => events.filter((e) => ip === undefined || e.info.ip === ip).reduce((sum, e) => sum + e.count, 0);

describe('AuthFailureTracker', () => {
  it('writes the first failure per address and reason at once and counts the rest until the window closes', async () => {
    const { clock, written, counted, failures, info } = tracker({ limit: 0 });
    for (let i = 0; i < 100; i++) await failures.fail(info('192.0.2.1', i % 2 === 0 ? 'missing' : 'not_found', i));
    expect(written.map((e) => [e.info.reason, e.count])).toEqual([['missing', 1], ['not_found', 1]]);
    expect(counted).toHaveLength(100);
    failures.sweep();
    expect(written).toHaveLength(2); // the window is still open
    clock.advance(60_000);
    failures.sweep();
    await failures.close();
    expect(written.slice(2).map((e) => [e.info.reason, e.count, e.info.requestId])).toEqual([['missing', 49, 'req_98'], ['not_found', 49, 'req_99']]);
    expect(written[2]!.window).toEqual({ from: '2026-11-01T00:00:00.000Z', to: '2026-11-01T00:01:00.000Z' });
    expect(total(written)).toBe(100);
  });

  it('throttles an address after the limit until its window ends, and no other address', () => {
    const { clock, failures, info } = tracker({ limit: 3 });
    for (let i = 0; i < 2; i++) void failures.fail(info('192.0.2.1', 'missing'));
    expect(failures.retryAfter('192.0.2.1')).toBe(0);
    void failures.fail(info('192.0.2.1', 'missing'));
    expect(failures.retryAfter('192.0.2.1')).toBe(60);
    expect(failures.retryAfter('192.0.2.2')).toBe(0);
    clock.advance(59_001);
    expect(failures.retryAfter('192.0.2.1')).toBe(1);
    clock.advance(999);
    expect(failures.retryAfter('192.0.2.1')).toBe(0);
  });

  it('never throttles with limit 0', () => {
    const { failures, info } = tracker({ limit: 0 });
    for (let i = 0; i < 50; i++) void failures.fail(info('192.0.2.1', 'missing'));
    expect(failures.retryAfter('192.0.2.1')).toBe(0);
  });

  it('a failure after the window writes the old window’s count and opens a new one', async () => {
    const { clock, written, failures, info } = tracker();
    for (let i = 0; i < 5; i++) await failures.fail(info('192.0.2.1', 'missing'));
    clock.advance(61_000);
    await failures.fail(info('192.0.2.1', 'missing'));
    await failures.close();
    expect(written.map((e) => e.count)).toEqual([1, 4, 1]);
  });

  it('tracks at most maxAddresses, writing the counts of the one it drops', async () => {
    const { written, failures, info } = tracker({ maxAddresses: 3 });
    for (let a = 0; a < 10; a++) for (let i = 0; i < 4; i++) await failures.fail(info(`192.0.2.${a}`, 'missing'));
    expect(failures.size).toBe(3);
    await failures.close();
    expect(failures.size).toBe(0);
    expect(total(written)).toBe(40);
    for (let a = 0; a < 10; a++) expect(total(written, `192.0.2.${a}`)).toBe(4);
  });

  it('loses no count at shutdown', async () => {
    const { written, failures, info } = tracker();
    for (let i = 0; i < 7; i++) await failures.fail(info('2001:db8::1', 'expired'));
    await failures.close();
    expect(total(written)).toBe(7);
  });
});

describe('addressKey', () => {
  it('counts IPv4 by address and IPv6 by /64', () => {
    expect(addressKey('203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('2001:db8:0:1::5')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:DB8:0:1:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:0db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });

  it('throttles a host stepping through its /64', () => {
    const { failures, info } = tracker({ limit: 3 });
    for (let i = 1; i <= 3; i++) void failures.fail(info(`2001:db8:0:1::${i}`, 'missing'));
    expect(failures.retryAfter('2001:db8:0:1::99')).toBe(60);
    expect(failures.retryAfter('2001:db8:0:2::1')).toBe(0);
  });
});
