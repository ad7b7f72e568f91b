import { describe, expect, it } from 'vitest';
import { compileAllowlist, normaliseCidr, cidrWithin } from './ip-allowlist.js';

describe('IP allowlists', () => {
  it('normalises addresses to CIDR form and refuses what is not one', () => {
    expect(normaliseCidr('203.0.113.7', 'ip')).toBe('203.0.113.7/32');
    expect(normaliseCidr('2001:DB8::/32', 'ip')).toBe('2001:db8::/32');
    for (const bad of ['10.0.0.0/33', '2001:db8::/129', 'nope', '10.0.0.1/8/1', '10.0.0.256', '10.0.0.0/-1', '']) {
      expect(() => normaliseCidr(bad, 'ip'), bad).toThrow(/not an IPv4 or IPv6/);
    }
  });

  it('allows addresses inside IPv4 and IPv6 ranges and nothing else', () => {
    const list = compileAllowlist(['10.0.0.0/8', '2001:db8::/32']);
    expect(list.allows('10.1.2.3')).toBe(true);
    expect(list.allows('11.0.0.1')).toBe(false);
    expect(list.allows('2001:db8::1')).toBe(true);
    expect(list.allows('2001:db9::1')).toBe(false);
    expect(list.allows('::ffff:10.1.2.3')).toBe(true);
    expect(list.allows('not-an-ip')).toBe(false);
  });
});

describe('cidrWithin', () => {
  it('holds when the inner block nests in the outer one, and only then', () => {
    expect(cidrWithin('10.1.0.0/16', '10.0.0.0/8')).toBe(true);
    expect(cidrWithin('10.0.0.0/8', '10.0.0.0/8')).toBe(true);
    expect(cidrWithin('10.0.0.5/32', '10.0.0.0/24')).toBe(true);
    expect(cidrWithin('10.0.0.0/8', '10.0.0.0/16')).toBe(false);
    expect(cidrWithin('11.0.0.0/16', '10.0.0.0/8')).toBe(false);
    expect(cidrWithin('0.0.0.0/0', '127.0.0.1/32')).toBe(false);
    expect(cidrWithin('2001:db8:1::/48', '2001:db8::/32')).toBe(true);
    expect(cidrWithin('2001:db8::/16', '2001:db8::/32')).toBe(false);
    expect(cidrWithin('10.0.0.0/8', '::/0')).toBe(true);
    expect(cidrWithin('::/0', '0.0.0.0/0')).toBe(false);
  });
});
