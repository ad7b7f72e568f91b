/**
 * The connector types a rotation policy can name, built once with their dependencies. The run
 * engine looks a connector up by the policy's `connector.type`; the policy validator asks the
 * same registry for settings problems, so both agree on what exists.
 */
import type { Outbound } from '../../outbound/index.js';
import type { RandomBytes } from '../../shared/ids.js';
import { CommandConnector } from './command-connector.js';
import type { Connector } from './connector.js';
import { HttpConnector } from './http-connector.js';
import { PostgresConnector } from './postgres-connector.js';

export interface ConnectorRegistryDeps {
  /** Random source for generated passwords (postgres). */
  readonly random?: RandomBytes;
  /**
   * The operator's egress allowlist and program registry. Without it (the CLI checking a policy
   * file away from a server) settings are checked for shape only, and no connector may call
   * out or start a program.
   */
  readonly outbound?: Outbound;
}

export interface ConnectorRegistry {
  readonly types: readonly string[];
  /** The connector for a type, or undefined when there is none. */
  get(type: string): Connector | undefined;
  /** Problems with a policy's connector block: an unknown type, or its settings' problems. */
  validate(type: unknown, settings: unknown): string[];
  /** A health check or URL deploy hook: a problem when the egress allowlist refuses its host (never, without one). */
  checkUrl(url: string): string | undefined;
  /** A command deploy hook's program and extra arguments: its problems (shape only without a registry). */
  checkProgram(name: string, args: readonly string[]): string[];
}

export function createConnectorRegistry(deps: ConnectorRegistryDeps = {}, extra: readonly Connector[] = []): ConnectorRegistry {
  const connectors = new Map<string, Connector>();
  const egress = deps.outbound?.egress;
  const programs = deps.outbound?.programs;
  for (const connector of [
    new HttpConnector(egress ? { egress } : {}),
    new PostgresConnector({ ...(deps.random ? { random: deps.random } : {}), ...(egress ? { egress } : {}) }),
    new CommandConnector(programs ? { programs } : {}),
    ...extra,
  ]) {
    connectors.set(connector.type, connector);
  }
  return {
    types: [...connectors.keys()],
    get: (type) => connectors.get(type),
    validate(type, settings) {
      const connector = typeof type === 'string' ? connectors.get(type) : undefined;
      if (!connector) return [`connector type must be one of ${[...connectors.keys()].join(', ')}`];
      return connector.validateSettings(settings);
    },
    checkUrl: (url) => egress?.checkUrl(url),
    checkProgram: (name, args) => programs?.checkUse(name, args) ?? [],
  };
}
