/** The egress allowlist and the program registry as one dependency of the rotation module. */
import { createEgress, type Egress } from './egress.js';
import { createProgramRegistry, type ProgramRegistry } from './programs.js';

/** The two together, as the rotation module takes them. */
export interface Outbound {
  readonly egress: Egress;
  readonly programs: ProgramRegistry;
}

/** Nothing allowed: no host, no program. The default wherever no configuration is given. */
export function denyAllOutbound(): Outbound {
  return { egress: createEgress({ allow: [] }), programs: createProgramRegistry([]) };
}
