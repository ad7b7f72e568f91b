/** IPv4 and IPv6 allowlists, compiled once into a node:net BlockList. */
import { BlockList, isIP } from 'node:net';
import { AppError } from '../shared/errors.js';

export interface CompiledAllowlist {
  allows(ip: string): boolean;
}

/** Normalises one entry to CIDR form, or throws ERR_INVALID_REQUEST naming it. */
export function normaliseCidr(entry: string, field: string): string {
  const [address = '', prefixText, ...rest] = entry.split('/');
  const family = isIP(address);
  const maxPrefix = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? maxPrefix : /^[0-9]{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (family === 0 || rest.length > 0 || !(prefix >= 0 && prefix <= maxPrefix)) {
    throw new AppError('ERR_INVALID_REQUEST', `${field} entry "${entry.slice(0, 64)}" is not an IPv4 or IPv6 address or CIDR`, {
      details: [{ field, message: 'expected an address such as 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32' }],
    });
  }
  return `${address.toLowerCase()}/${prefix}`;
}

export function compileAllowlist(cidrs: readonly string[]): CompiledAllowlist {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address = '', prefix = '0'] = cidr.split('/');
    list.addSubnet(address, Number(prefix), isIP(address) === 6 ? 'ipv6' : 'ipv4');
  }
  return {
    allows(ip: string): boolean {
      const family = isIP(ip);
      if (family === 0) return false;
      const mapped = family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip) : null;
      if (mapped && list.check(mapped[1]!, 'ipv4')) return true;
      return list.check(ip, family === 6 ? 'ipv6' : 'ipv4');
    },
  };
}

/**
 * Whether every address of CIDR `inner` lies in CIDR `outer` (both normalised). Two CIDR blocks
 * either nest or do not meet, so it is enough that `outer` is no narrower and holds one address
 * of `inner`. An IPv4 block inside `::ffff:0:0/96` counts, as `allows` lets mapped addresses in.
 */
export function cidrWithin(inner: string, outer: string): boolean {
  const [innerAddress = '', innerPrefixText = '0'] = inner.split('/');
  const [outerAddress = '', outerPrefixText = '0'] = outer.split('/');
  let address = innerAddress;
  let prefix = Number(innerPrefixText);
  const outerPrefix = Number(outerPrefixText);
  const outerFamily = isIP(outerAddress);
  if (isIP(address) === 4 && outerFamily === 6) {
    address = `::ffff:${address}`;
    prefix += 96;
  }
  if (isIP(address) !== outerFamily || prefix < outerPrefix) return false;
  const list = new BlockList();
  list.addSubnet(outerAddress, outerPrefix, outerFamily === 6 ? 'ipv6' : 'ipv4');
  return list.check(address, outerFamily === 6 ? 'ipv6' : 'ipv4');
}
