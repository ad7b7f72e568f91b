/** What the server may do to the outside world: the egress allowlist and the program registry (both the operator's). */
export { parseIp, parseRange, inRange, formatIp, classifyAddress, type IpAddress, type IpRange, type IpFamily, type AddressClass } from './addresses.js';
export { createEgress, parseEgressRule, EgressRefusedError, type Egress, type EgressRule, type EgressOptions, type Resolver, type ResolvedAddress } from './egress.js';
export { egressRequest, OutboundNetworkError, type OutboundRequest, type OutboundAnswer } from './request.js';
export {
  createProgramRegistry,
  sha256Hex,
  NO_PROGRAMS,
  PROGRAM_NAME_RE,
  ProgramRefusedError,
  type ProgramConfig,
  type ProgramRegistry,
  type ProgramRegistryDeps,
  type PreparedProgram,
} from './programs.js';
export { denyAllOutbound, type Outbound } from './outbound.js';
