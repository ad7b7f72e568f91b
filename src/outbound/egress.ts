/**
 * The egress allowlist: which hosts and ports the server may call on a policy's behalf. The
 * operator writes it (the configuration file's `egress.allow`); a policy can only pick among
 * what is listed. Rules:
 *
 *   api.acme.com:443     an exact host name and port        *.acme.com:443   any subdomain
 *   api.acme.com:*       any port                           203.0.113.7:443  an IP address
 *   [2001:db8::1]:443    an IPv6 address                    10.0.0.0/8:5432  a CIDR range
 *
 * A host name rule lets the server call that name when every address it resolves to is public.
 * Loopback, private, link-local, metadata and other non-public addresses are reached only when an
 * IP/CIDR rule covers that very address and port: a name rule never opens them, so a DNS record
 * pointed at 169.254.169.254 or 127.0.0.1 is refused. The check runs on the addresses the
 * connection will use (see request.ts), not on the URL text alone.
 */
import { classifyAddress, formatIp, inRange, parseIp, parseRange, type AddressClass, type IpAddress, type IpRange } from './addresses.js';

export type EgressRule =
  | { readonly kind: 'name'; readonly host: string; readonly port: number | '*'; readonly text: string }
  | { readonly kind: 'suffix'; readonly suffix: string; readonly port: number | '*'; readonly text: string }
  | { readonly kind: 'ip'; readonly range: IpRange; readonly port: number | '*'; readonly text: string };

export interface ResolvedAddress {
  readonly address: string;
  readonly family: number;
}

/** Resolves a host name to every address it has (injected so tests control DNS). */
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

/** A refused call: names the host and why, never a URL path or query (they may hold secrets). */
export class EgressRefusedError extends Error {
  readonly host: string;
  constructor(host: string, reason: string) {
    super(`egress to ${host} is refused: ${reason}`);
    this.name = 'EgressRefusedError';
    this.host = host;
  }
}

export interface Egress {
  readonly rules: readonly EgressRule[];
  /**
   * The check that needs no DNS (a policy put): the URL's host and port are listed. Returns a
   * problem, or undefined when allowed.
   */
  checkUrl(url: string): string | undefined;
  /** Whether `address` (resolved from `host`) may be connected to on `port`; a problem or undefined. */
  checkAddress(host: string, port: number, address: string): string | undefined;
  /** Resolves `host` (or takes it as an IP literal) and checks every address; throws EgressRefusedError. */
  resolveChecked(host: string, port: number): Promise<ResolvedAddress[]>;
}

const NAME_RE = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function parsePort(text: string): number | '*' | undefined {
  if (text === '*') return '*';
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** Parses one allowlist entry; a string is the problem with it. */
export function parseEgressRule(text: string): EgressRule | string {
  const entry = text.trim();
  const bracket = /^\[([^\]]+)\]:([^:]+)$/.exec(entry);
  const colon = entry.lastIndexOf(':');
  const hostText = bracket ? bracket[1]! : colon > 0 ? entry.slice(0, colon) : undefined;
  const portText = bracket ? bracket[2]! : colon > 0 ? entry.slice(colon + 1) : undefined;
  if (hostText === undefined || portText === undefined || (!bracket && hostText.includes(':'))) {
    return `"${entry}" must be host:port (write IPv6 as [::1]:443; the port may be *)`;
  }
  const port = parsePort(portText);
  if (port === undefined) return `"${entry}" has no valid port (1-65535 or *)`;
  const range = parseRange(hostText);
  if (range) return { kind: 'ip', range, port, text: entry };
  if (bracket) return `"${entry}" is not an IPv6 address or range`;
  const host = hostText.toLowerCase().replace(/\.$/, '');
  if (host.startsWith('*.')) {
    const suffix = host.slice(2);
    if (!NAME_RE.test(suffix) || !suffix.includes('.')) return `"${entry}": a wildcard needs a domain of at least two labels after "*."`;
    return { kind: 'suffix', suffix, port, text: entry };
  }
  if (/^[0-9./]+$/.test(host)) return `"${entry}" is not a valid IP address or CIDR range`;
  if (!NAME_RE.test(host)) return `"${entry}" is not a host name, IP address or CIDR range`;
  return { kind: 'name', host, port, text: entry };
}

export interface EgressOptions {
  readonly allow: readonly string[];
  readonly resolver?: Resolver;
}

const defaultResolver: Resolver = async (hostname) => {
  const { lookup } = await import('node:dns/promises');
  return lookup(hostname, { all: true, verbatim: true });
};

function portMatches(rule: number | '*', port: number): boolean {
  return rule === '*' || rule === port;
}

function describe(address: IpAddress, klass: AddressClass): string {
  return `${formatIp(address)} is a ${klass} address and no IP rule lists it`;
}

/** Builds the allowlist; throws on a bad rule (the configuration loader reports rules first). */
export function createEgress(options: EgressOptions): Egress {
  const rules: EgressRule[] = [];
  for (const text of options.allow) {
    const rule = parseEgressRule(text);
    if (typeof rule === 'string') throw new Error(`egress.allow: ${rule}`);
    rules.push(rule);
  }
  const resolver = options.resolver ?? defaultResolver;
  const nameListed = (host: string, port: number): boolean =>
    rules.some((rule) =>
      rule.kind === 'name' ? rule.host === host && portMatches(rule.port, port) : rule.kind === 'suffix' ? host.endsWith(`.${rule.suffix}`) && portMatches(rule.port, port) : false,
    );
  const ipListed = (address: IpAddress, port: number): boolean => rules.some((rule) => rule.kind === 'ip' && inRange(address, rule.range) && portMatches(rule.port, port));
  const canonicalHost = (host: string): string => host.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');

  const checkAddress = (hostText: string, port: number, addressText: string): string | undefined => {
    const host = canonicalHost(hostText);
    const isName = parseIp(host) === undefined;
    if (isName && !nameListed(host, port)) return `${host}:${port} is not in egress.allow`;
    const address = parseIp(addressText);
    if (!address) return `${host} resolved to something that is not an IP address`;
    if (ipListed(address, port)) return undefined;
    const klass = classifyAddress(address);
    if (klass !== 'public') return describe(address, klass);
    // A public address is fine under a listed name; a bare public IP needs its own rule.
    return isName ? undefined : `${formatIp(address)}:${port} is not in egress.allow`;
  };

  const checkHost = (hostText: string, port: number): string | undefined => {
    const host = canonicalHost(hostText);
    if (parseIp(host)) return checkAddress(host, port, host);
    return nameListed(host, port) ? undefined : `${host}:${port} is not in egress.allow`;
  };

  return {
    rules,
    checkUrl(text) {
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        return 'not a URL';
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'only http and https URLs can be called';
      const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
      const problem = checkHost(url.hostname, port);
      return problem === undefined ? undefined : `egress to ${canonicalHost(url.hostname)} is refused: ${problem}`;
    },
    checkAddress,
    async resolveChecked(hostText, port) {
      const host = canonicalHost(hostText);
      const hostProblem = checkHost(host, port);
      if (hostProblem !== undefined) throw new EgressRefusedError(host, hostProblem);
      const literal = parseIp(host);
      let addresses: readonly ResolvedAddress[];
      if (literal) addresses = [{ address: host, family: literal.family === 4 && host.includes(':') ? 6 : literal.family }];
      else {
        try {
          addresses = await resolver(host);
        } catch {
          throw new EgressRefusedError(host, 'the name does not resolve');
        }
      }
      if (addresses.length === 0) throw new EgressRefusedError(host, 'the name does not resolve');
      // Every address must pass: the resolver's order (and a second lookup) must not matter.
      for (const { address } of addresses) {
        const problem = checkAddress(host, port, address);
        if (problem !== undefined) throw new EgressRefusedError(host, problem);
      }
      return [...addresses];
    },
  };
}
