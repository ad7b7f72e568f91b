import { describe, expect, it } from 'vitest';
import { createConnectorRegistry } from './registry.js';
import type { Connector } from './connector.js';

describe('connector registry', () => {
  it('knows the three built-in types and validates through them', () => {
    const registry = createConnectorRegistry();
    expect(registry.types).toEqual(['http', 'postgres', 'command']);
    expect(registry.get('command')?.type).toBe('command');
    expect(registry.get('smtp')).toBeUndefined();
    expect(registry.validate('command', { command: 'node' })).toEqual([]);
    expect(registry.validate('command', {})).toEqual(['command must be a non-empty string']);
    expect(registry.validate('smtp', {})).toEqual(['connector type must be one of http, postgres, command']);
    expect(registry.validate(7, {})).toHaveLength(1);
  });

  it('takes extra connectors (for tests or plugins), a later one replacing a built-in', () => {
    const fake = { type: 'http', validateSettings: () => ['fake'] } as unknown as Connector;
    expect(createConnectorRegistry({}, [fake]).validate('http', {})).toEqual(['fake']);
  });
});
