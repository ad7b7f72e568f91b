/** Rotation: policies as code (model, validator, YAML files, planner), their storage, and the connectors runs will drive. */
export {
  createPolicyValidator,
  normalisePolicy,
  HOUR_MS,
  type RotationPolicy,
  type PolicyLimits,
  type PolicyProblem,
  type PolicyPath,
  type PolicyCheck,
  type PolicySetCheck,
  type PolicyValidator,
  type ConnectorSettingsCheck,
} from './policy.js';
export { parseCron, smallestCronGapMs, type CronFields, type CronParse } from './cron.js';
export { parsePolicyFile, MAX_POLICY_FILE_BYTES, type FileProblem, type PolicyFileResult } from './policy-file.js';
export { planPolicies, changedFields, type PolicyPlan, type PolicyUpdate } from './plan.js';
export {
  RotationPolicyService,
  type RotationPolicyServiceDeps,
  type RotationPolicyRecord,
  type PutPolicyResult,
  type DeletedPolicy,
  type PolicyAuthor,
} from './policy-service.js';
export { scrubText, summariseFailure, safeSummary, bounded, MAX_FAILURE_CHARS } from './failure.js';
export { policyNeeds, policyNeedsByField, policyReads, targetNeeds, unmetNeeds, type PolicyNeed, type VaultRead } from './policy-grant.js';
export * from './connectors/index.js';
export { RotationEngine, DEFAULT_ENGINE_CONFIG, type RotationEngineConfig, type RotationEngineDeps, type TriggerInput, type ListRunsFilter, type RotationStats } from './runs/engine.js';
export * from './runs/run-model.js';
export { createRotationModule, derivedRandom, connectorSettingsCheck, type RotationModule, type RotationModuleDeps } from './setup.js';
export { latestFiring } from './cron.js';
