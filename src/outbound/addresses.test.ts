import { describe, expect, it } from 'vitest';
import { classifyAddress, formatIp, inRange, parseIp, parseRange } from './addresses.js';

const classOf = (text: string) => classifyAddress(parseIp(text)!);

describe('address classification', () => {
  it('knows metadata, link-local, loopback, private and unspecified IPv4 ranges', () => {
    expect(classOf('169.254.169.254')).toBe('metadata');
    expect(classOf('169.254.1.1')).toBe('link-local');
    expect(classOf('127.0.0.1')).toBe('loopback');
    expect(classOf('127.255.0.9')).toBe('loopback');
    for (const text of ['10.0.0.1', '10.255.255.255', '172.16.0.1', '172.31.9.9', '192.168.1.1', '100.64.0.1', '100.127.255.254']) expect(classOf(text), text).toBe('private');
    expect(classOf('0.0.0.0')).toBe('unspecified');
    expect(classOf('0.1.2.3')).toBe('unspecified');
    expect(classOf('224.0.0.1')).toBe('reserved');
    expect(classOf('255.255.255.255')).toBe('reserved');
    for (const text of ['8.8.8.8', '172.32.0.1', '100.128.0.1', '11.0.0.1', '93.184.216.34']) expect(classOf(text), text).toBe('public');
  });

  it('knows the IPv6 ones, the EC2 metadata address included', () => {
    expect(classOf('fd00:ec2::254')).toBe('metadata');
    expect(classOf('::1')).toBe('loopback');
    expect(classOf('::')).toBe('unspecified');
    expect(classOf('fe80::1')).toBe('link-local');
    expect(classOf('febf:ffff::1')).toBe('link-local');
    expect(classOf('fc00::1')).toBe('private');
    expect(classOf('fdff::1')).toBe('private');
    expect(classOf('64:ff9b::7f00:1')).toBe('reserved');
    expect(classOf('2002:7f00:1::')).toBe('reserved');
    expect(classOf('2606:4700:4700::1111')).toBe('public');
  });

  it('reads every IPv4-mapped spelling as the IPv4 address it maps', () => {
    for (const text of ['::ffff:127.0.0.1', '[::ffff:127.0.0.1]', '::ffff:7f00:1', '0:0:0:0:0:ffff:7f00:0001', '::FFFF:127.0.0.1']) {
      const address = parseIp(text)!;
      expect(address.family, text).toBe(4);
      expect(formatIp(address), text).toBe('127.0.0.1');
      expect(classifyAddress(address), text).toBe('loopback');
    }
    expect(classOf('::ffff:169.254.169.254')).toBe('metadata');
    expect(classOf('::ffff:10.1.2.3')).toBe('private');
    expect(classOf('::ffff:192.168.0.1')).toBe('private');
    expect(classOf('::ffff:8.8.8.8')).toBe('public');
  });

  it('refuses what is not an address', () => {
    for (const text of ['', 'localhost', '1.2.3', '1.2.3.256', '::g', '1.2.3.4/8', '[::1']) expect(parseIp(text), text).toBeUndefined();
    // A zone names an interface; the address is still link-local.
    expect(classOf('fe80::1%eth0')).toBe('link-local');
  });
});

describe('CIDR ranges', () => {
  it('matches addresses within the prefix only, per family', () => {
    const ten = parseRange('10.0.0.0/8')!;
    expect(inRange(parseIp('10.200.3.4')!, ten)).toBe(true);
    expect(inRange(parseIp('11.0.0.0')!, ten)).toBe(false);
    expect(inRange(parseIp('::ffff:10.0.0.1')!, ten)).toBe(true);
    expect(inRange(parseIp('fd00::1')!, ten)).toBe(false);
    const v6 = parseRange('fd00:ec2::/64')!;
    expect(inRange(parseIp('fd00:ec2::254')!, v6)).toBe(true);
    expect(inRange(parseIp('fd00:ec3::254')!, v6)).toBe(false);
    expect(inRange(parseIp('10.0.0.1')!, parseRange('::ffff:10.0.0.0/104')!)).toBe(true);
    expect(parseRange('10.1.2.3')).toEqual({ family: 4, base: parseIp('10.1.2.3')!.value, prefix: 32 });
    // The base is masked: 10.1.2.3/8 is 10.0.0.0/8.
    expect(parseRange('10.1.2.3/8')).toEqual(ten);
  });

  it('refuses a prefix out of range or malformed', () => {
    for (const text of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/x', '10.0.0.0/-1', 'x/8']) expect(parseRange(text), text).toBeUndefined();
  });
});
