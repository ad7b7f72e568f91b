/**
 * Builds the rotation module from its neighbours: the connector registry (with keysmith-key,
 * which needs the key store), the policy store (validating settings through that registry) and
 * the run engine. The composition root and the test context both call this, so they agree.
 */
import { createHmac } from 'node:crypto';
import type { AuditLog } from '../audit/index.js';
import type { Kysely } from 'kysely';
import type { KeyService } from '../keys/index.js';
import { denyAllOutbound, type Outbound } from '../outbound/index.js';
import type { SecretService } from '../secrets/index.js';
import type { Database, StoreDialect } from '../store/index.js';
import type { Clock } from '../shared/clock.js';
import type { RandomBytes } from '../shared/ids.js';
import type { Connector } from './connectors/connector.js';
import { KeysmithKeyConnector, type KeysmithKeyConnectorDeps } from './connectors/keysmith-key-connector.js';
import { createConnectorRegistry, type ConnectorRegistry } from './connectors/registry.js';
import { RotationPolicyService } from './policy-service.js';
import { RotationEngine, type RotationEngineConfig } from './runs/engine.js';

export interface RotationModuleDeps {
  readonly db: Kysely<Database>;
  /** The audit log every change is written to, in the change's transaction. */
  readonly audit: AuditLog;
  readonly dialect: StoreDialect;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly keys: KeyService;
  readonly secrets: SecretService;
  /** A server secret (derived from the master key) that makes run-derived keys unguessable. */
  readonly runSecret: Uint8Array;
  readonly engine?: Partial<RotationEngineConfig>;
  /** Extra connectors (tests, plugins); a later one replaces a built-in of the same type. */
  readonly connectors?: readonly Connector[];
  /**
   * The operator's egress allowlist and program registry (the server configuration file). When
   * absent nothing is allowed: no host can be called and no program run.
   */
  readonly outbound?: Outbound;
}

export interface RotationModule {
  readonly policies: RotationPolicyService;
  readonly connectors: ConnectorRegistry;
  readonly engine: RotationEngine;
}

export function createRotationModule(deps: RotationModuleDeps): RotationModule {
  const randomFor = (runId: string) => derivedRandom(deps.runSecret, runId);
  const outbound = deps.outbound ?? denyAllOutbound();
  const connectors = createConnectorRegistry({ random: deps.random, outbound }, [new KeysmithKeyConnector({ keys: deps.keys, randomFor }), ...(deps.connectors ?? [])]);
  // A policy's overlap may not outlast what the key class allows a key to live.
  const policies = new RotationPolicyService({ db: deps.db, audit: deps.audit, clock: deps.clock, limits: { maxOverlapMs: deps.keys.config.maxTtlMs }, connectors });
  const engine = new RotationEngine({ ...deps, outbound, policies, connectors, randomFor, ...(deps.engine ? { config: deps.engine } : {}) });
  return { policies, connectors, engine };
}

/**
 * A random source determined by a secret and a label: HMAC-SHA256 in counter mode. The same
 * run id gives the same bytes, so a rotation repeated after a crash re-derives its key.
 */
export function derivedRandom(secret: Uint8Array, label: string): RandomBytes {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (size: number) => {
    while (pool.length < size) {
      const block = createHmac('sha256', secret).update(`${label}\u0000${counter++}`).digest();
      pool = Buffer.concat([pool, block]);
    }
    const out = pool.subarray(0, size);
    pool = pool.subarray(size);
    return new Uint8Array(out);
  };
}

/**
 * The settings check of every connector type, for checking a policy file away from a server
 * (the CLI's plan): the same validators the server uses, without the services runs need. It has
 * no server configuration, so it checks shapes only: a `program` is a name (not whether the
 * server registered it), a URL is https (not whether the egress allowlist lists its host). The
 * server checks those when the policy is put, and again when it runs.
 */
export function connectorSettingsCheck(): ConnectorRegistry {
  const unused = () => {
    throw new Error('this registry only checks settings');
  };
  const keys = { rotate: unused, replayRotation: unused, get: unused, revoke: unused } as unknown as KeysmithKeyConnectorDeps['keys'];
  return createConnectorRegistry({}, [new KeysmithKeyConnector({ keys, randomFor: unused })]);
}
