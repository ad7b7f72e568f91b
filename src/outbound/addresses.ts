/**
 * IP addresses as numbers, CIDR ranges, and which ranges are not the public internet. The
 * egress check classifies the address a connection will actually go to, so every spelling of
 * one address (IPv4-mapped IPv6, `::127.0.0.1`) must land in the same class: everything is
 * reduced to one canonical form (IPv4 for a mapped address) before it is compared.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  /** The address as a number: 32 bits for IPv4, 128 for IPv6. */
  readonly value: bigint;
}

export interface IpRange {
  readonly family: IpFamily;
  readonly base: bigint;
  readonly prefix: number;
}

/** Why an address is not public; `public` when it is. */
export type AddressClass = 'public' | 'loopback' | 'private' | 'link-local' | 'metadata' | 'unspecified' | 'reserved';

const BITS: Record<IpFamily, number> = { 4: 32, 6: 128 };

function parseV4(text: string): bigint {
  return text.split('.').reduce((sum, part) => (sum << 8n) | BigInt(Number(part)), 0n);
}

function parseV6(text: string): bigint {
  let body = text;
  // A dotted IPv4 tail (::ffff:1.2.3.4) is two 16-bit groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(body);
  if (dotted) {
    const v4 = parseV4(dotted[1]!);
    body = `${body.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = body.includes('::') ? body.split('::') : [body, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(missing).fill('0'), ...tailGroups];
  return groups.reduce((sum, group) => (sum << 16n) | BigInt(parseInt(group, 16)), 0n);
}

const MAPPED_PREFIX = 0xffffn << 32n;

/**
 * Parses an IP address (IPv6 with or without brackets; a zone is dropped); an IPv4-mapped IPv6
 * address becomes the IPv4 address it maps, so `::ffff:127.0.0.1` is loopback like `127.0.0.1`.
 */
export function parseIp(text: string): IpAddress | undefined {
  const bracketless = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  if (isIPv4(bracketless)) return { family: 4, value: parseV4(bracketless) };
  if (!isIPv6(bracketless)) return undefined;
  // A zone (fe80::1%eth0) picks an interface, not another address: classify the address.
  const bare = bracketless.split('%')[0]!;
  const value = parseV6(bare.toLowerCase());
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn };
  return { family: 6, value };
}

export function formatIp(address: IpAddress): string {
  if (address.family === 4) {
    return [24n, 16n, 8n, 0n].map((shift) => String((address.value >> shift) & 0xffn)).join('.');
  }
  const groups: string[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(((address.value >> shift) & 0xffffn).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::');
}

/** Parses `10.0.0.0/8`, `fc00::/7`, or a single address (a /32 or /128). */
export function parseRange(text: string): IpRange | undefined {
  const slash = text.lastIndexOf('/');
  const address = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!address) return undefined;
  const fullBits = BITS[address.family];
  let prefix = fullBits;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText)) return undefined;
    prefix = Number(prefixText);
    // A mapped range (::ffff:10.0.0.0/104) is given in IPv6 bits: count them on the IPv4 address.
    const rawFamily: IpFamily = isIPv4(text.slice(0, slash)) ? 4 : 6;
    if (rawFamily === 6 && address.family === 4) prefix -= 96;
    if (prefix < 0 || prefix > fullBits) return undefined;
  }
  const hostBits = BigInt(fullBits - prefix);
  return { family: address.family, base: (address.value >> hostBits) << hostBits, prefix };
}

export function inRange(address: IpAddress, range: IpRange): boolean {
  if (address.family !== range.family) return false;
  const hostBits = BigInt(BITS[range.family] - range.prefix);
  return (address.value >> hostBits) << hostBits === range.base;
}

const CLASSES: ReadonlyArray<readonly [string, AddressClass]> = [
  // Cloud metadata endpoints first, so the message names them.
  ['169.254.169.254/32', 'metadata'],
  ['fd00:ec2::254/128', 'metadata'],
  ['0.0.0.0/8', 'unspecified'],
  ['127.0.0.0/8', 'loopback'],
  ['10.0.0.0/8', 'private'],
  ['172.16.0.0/12', 'private'],
  ['192.168.0.0/16', 'private'],
  ['100.64.0.0/10', 'private'], // carrier-grade NAT
  ['169.254.0.0/16', 'link-local'],
  ['192.0.0.0/24', 'reserved'],
  ['192.0.2.0/24', 'reserved'],
  ['198.18.0.0/15', 'reserved'],
  ['198.51.100.0/24', 'reserved'],
  ['203.0.113.0/24', 'reserved'],
  ['224.0.0.0/4', 'reserved'], // multicast
  ['240.0.0.0/4', 'reserved'], // includes 255.255.255.255
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  // IPv4-compatible (deprecated) and NAT64 forms carry an IPv4 address a gateway may reach.
  ['::/96', 'reserved'],
  ['64:ff9b::/96', 'reserved'],
  ['64:ff9b:1::/48', 'reserved'],
  ['fc00::/7', 'private'],
  ['fe80::/10', 'link-local'],
  ['fec0::/10', 'private'], // site-local (deprecated)
  ['ff00::/8', 'reserved'], // multicast
  ['2001:db8::/32', 'reserved'],
  ['2002::/16', 'reserved'], // 6to4 wraps an IPv4 address
  ['2001::/32', 'reserved'], // Teredo likewise
];
const CLASS_RANGES = CLASSES.map(([text, klass]) => [parseRange(text)!, klass] as const);

/** `public` for an address on the internet, otherwise why it is not. */
export function classifyAddress(address: IpAddress): AddressClass {
  for (const [range, klass] of CLASS_RANGES) if (inRange(address, range)) return klass;
  return 'public';
}
