import { describe, expect, it } from 'vitest';
import { createConnectorRegistry } from './registry.js';
import type { Connector } from './connector.js';
import { denyAllOutbound } from '../../outbound/index.js';

describe('connector registry', () => {
  it('knows the three built-in types and validates through them', () => {
    const registry = createConnectorRegistry();
    expect(registry.types).toEqual(['http', 'postgres', 'command']);
    expect(registry.get('command')?.type).toBe('command');
    expect(registry.get('smtp')).toBeUndefined();
    // Without the server's configuration: shapes only.
    expect(registry.validate('command', { program: 'refresh' })).toEqual([]);
    expect(registry.validate('command', {})).toEqual(['program must name a program registered in the server configuration']);
    expect(registry.checkUrl('https://169.254.169.254/')).toBeUndefined();
    expect(registry.checkProgram('anything', [])).toEqual([]);
    expect(registry.validate('smtp', {})).toEqual(['connector type must be one of http, postgres, command']);
    expect(registry.validate(7, {})).toHaveLength(1);
  });

  it('with the server configuration, checks programs and hosts against it', () => {
    const registry = createConnectorRegistry({ outbound: denyAllOutbound() });
    expect(registry.validate('command', { program: 'refresh' })).toEqual(['program "refresh" cannot run: no program is registered in the server configuration']);
    expect(registry.checkUrl('https://169.254.169.254/latest/meta-data')).toBe('egress to 169.254.169.254 is refused: 169.254.169.254 is a metadata address and no IP rule lists it');
    expect(registry.checkProgram('refresh', [])).toHaveLength(1);
  });

  it('takes extra connectors (for tests or plugins), a later one replacing a built-in', () => {
    const fake = { type: 'http', validateSettings: () => ['fake'] } as unknown as Connector;
    expect(createConnectorRegistry({}, [fake]).validate('http', {})).toEqual(['fake']);
  });
});
