import { describe, expect, it } from 'vitest';
import { EgressRefusedError, createEgress, parseEgressRule, type Resolver } from './egress.js';

function rejected(promise: Promise<unknown>): Promise<EgressRefusedError> {
  return promise.then(
    () => {
      throw new Error('expected a refusal');
    },
    (error: unknown) => {
      expect(error).toBeInstanceOf(EgressRefusedError);
      return error as EgressRefusedError;
    },
  );
}

const dns = (table: Record<string, string[]>): Resolver => async (host) => {
  const addresses = table[host];
  if (!addresses) throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
  return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
};

describe('egress rules', () => {
  it('parses names, wildcards, IP addresses, IPv6 in brackets and CIDR ranges, with a port or *', () => {
    expect(parseEgressRule('api.acme.com:443')).toMatchObject({ kind: 'name', host: 'api.acme.com', port: 443 });
    expect(parseEgressRule('API.Acme.COM.:443')).toMatchObject({ kind: 'name', host: 'api.acme.com' });
    expect(parseEgressRule('*.acme.com:443')).toMatchObject({ kind: 'suffix', suffix: 'acme.com', port: 443 });
    expect(parseEgressRule('vault.internal:*')).toMatchObject({ kind: 'name', port: '*' });
    expect(parseEgressRule('203.0.113.7:8443')).toMatchObject({ kind: 'ip', range: { family: 4, prefix: 32 }, port: 8443 });
    expect(parseEgressRule('[::1]:7000')).toMatchObject({ kind: 'ip', range: { family: 6, prefix: 128 } });
    expect(parseEgressRule('10.0.0.0/8:5432')).toMatchObject({ kind: 'ip', range: { family: 4, prefix: 8 } });
    expect(parseEgressRule('[fd00::/8]:*')).toMatchObject({ kind: 'ip', range: { family: 6, prefix: 8 }, port: '*' });
  });

  it('names what is wrong with a bad rule', () => {
    expect(parseEgressRule('api.acme.com')).toMatch(/must be host:port/);
    expect(parseEgressRule('::1:443')).toMatch(/must be host:port/);
    expect(parseEgressRule('api.acme.com:0')).toMatch(/no valid port/);
    expect(parseEgressRule('api.acme.com:70000')).toMatch(/no valid port/);
    expect(parseEgressRule('*.com:443')).toMatch(/wildcard needs a domain of at least two labels/);
    expect(parseEgressRule('*:443')).toMatch(/wildcard|not a host name/);
    expect(parseEgressRule('10.0.0.0/33:443')).toMatch(/not a valid IP address or CIDR range/);
    expect(parseEgressRule('[nope]:443')).toMatch(/not an IPv6 address/);
    expect(parseEgressRule('a_b.example:443')).toMatch(/not a host name/);
    expect(() => createEgress({ allow: ['nope'] })).toThrow(/egress.allow/);
  });
});

describe('egress checks', () => {
  const egress = createEgress({
    allow: ['api.acme.com:443', '*.vendor.example:443', 'internal.acme.com:8443', '10.20.0.0/16:8443', '127.0.0.1:7000', '[::1]:7001', '203.0.113.7:443'],
    resolver: dns({
      'api.acme.com': ['93.184.216.34'],
      'eu.vendor.example': ['93.184.216.35', '2606:4700::1'],
      'internal.acme.com': ['10.20.1.2'],
      'sneaky.vendor.example': ['93.184.216.36', '169.254.169.254'],
      'mapped.vendor.example': ['::ffff:127.0.0.1'],
    }),
  });

  it('allows a listed name on its port, and nothing else without a rule', () => {
    expect(egress.checkUrl('https://api.acme.com/v1/keys?x=1')).toBeUndefined();
    expect(egress.checkUrl('https://a.b.vendor.example/')).toBeUndefined();
    expect(egress.checkUrl('https://vendor.example/')).toBe('egress to vendor.example is refused: vendor.example:443 is not in egress.allow');
    expect(egress.checkUrl('https://api.acme.com:8443/')).toMatch(/api\.acme\.com:8443 is not in egress\.allow/);
    expect(egress.checkUrl('http://api.acme.com/')).toMatch(/api\.acme\.com:80 is not in egress\.allow/);
    expect(egress.checkUrl('https://evil.example/')).toMatch(/not in egress\.allow/);
    expect(egress.checkUrl('ftp://api.acme.com/')).toBe('only http and https URLs can be called');
  });

  it('refuses metadata, loopback, private and mapped addresses written in the URL unless an IP rule lists them', () => {
    expect(egress.checkUrl('http://169.254.169.254/latest/meta-data/')).toBe('egress to 169.254.169.254 is refused: 169.254.169.254 is a metadata address and no IP rule lists it');
    expect(egress.checkUrl('http://[fd00:ec2::254]/')).toMatch(/fd00:ec2::254 is a metadata address/);
    expect(egress.checkUrl('http://127.0.0.1:8080/')).toMatch(/127\.0\.0\.1 is a loopback address/);
    expect(egress.checkUrl('http://[::ffff:127.0.0.1]:8080/')).toMatch(/127\.0\.0\.1 is a loopback address/);
    expect(egress.checkUrl('http://10.0.0.5/')).toMatch(/10\.0\.0\.5 is a private address/);
    expect(egress.checkUrl('http://0.0.0.0:7000/')).toMatch(/unspecified/);
    // Listed exactly: allowed.
    expect(egress.checkUrl('http://127.0.0.1:7000/')).toBeUndefined();
    expect(egress.checkUrl('http://[::ffff:127.0.0.1]:7000/')).toBeUndefined();
    expect(egress.checkUrl('http://[::1]:7001/')).toBeUndefined();
    expect(egress.checkUrl('https://10.20.3.4:8443/')).toBeUndefined();
    expect(egress.checkUrl('https://203.0.113.7/')).toBeUndefined();
    // A public IP needs its own rule, even when a name rule would resolve to it.
    expect(egress.checkUrl('https://93.184.216.34/')).toMatch(/93\.184\.216\.34:443 is not in egress\.allow/);
  });

  it('checks every address a name resolves to: one private answer refuses the name', async () => {
    expect(await egress.resolveChecked('api.acme.com', 443)).toEqual([{ address: '93.184.216.34', family: 4 }]);
    expect(await egress.resolveChecked('eu.vendor.example', 443)).toHaveLength(2);
    const sneaky = await rejected(egress.resolveChecked('sneaky.vendor.example', 443));
    expect(sneaky.message).toBe('egress to sneaky.vendor.example is refused: 169.254.169.254 is a metadata address and no IP rule lists it');
    expect((await rejected(egress.resolveChecked('mapped.vendor.example', 443))).message).toMatch(/127\.0\.0\.1 is a loopback address/);
    expect((await rejected(egress.resolveChecked('nx.vendor.example', 443))).message).toMatch(/does not resolve/);
  });

  it('lets a name reach a private address only when an IP rule lists that address and port', async () => {
    expect(await egress.resolveChecked('internal.acme.com', 8443)).toEqual([{ address: '10.20.1.2', family: 4 }]);
    const other = createEgress({ allow: ['internal.acme.com:8443'], resolver: dns({ 'internal.acme.com': ['10.20.1.2'] }) });
    expect((await rejected(other.resolveChecked('internal.acme.com', 8443))).message).toMatch(/10\.20\.1\.2 is a private address and no IP rule lists it/);
    // The IP rule alone does not open the name either.
    const ipOnly = createEgress({ allow: ['10.20.0.0/16:8443'], resolver: dns({ 'internal.acme.com': ['10.20.1.2'] }) });
    expect((await rejected(ipOnly.resolveChecked('internal.acme.com', 8443))).message).toMatch(/internal\.acme\.com:8443 is not in egress\.allow/);
  });

  it('refuses everything when nothing is allowed', async () => {
    const none = createEgress({ allow: [], resolver: dns({ 'api.acme.com': ['93.184.216.34'] }) });
    expect(none.checkUrl('https://api.acme.com/')).toMatch(/not in egress\.allow/);
    await rejected(none.resolveChecked('api.acme.com', 443));
  });
});
