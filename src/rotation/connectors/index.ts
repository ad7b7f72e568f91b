/** Rotation connectors: the interface a run engine calls, and its implementations. */
export {
  ConnectorError,
  isConnectorError,
  scrub,
  secretStrings,
  sanitizeEvidence,
  evidenceText,
  type Connector,
  type ConnectorContext,
  type ConnectorErrorCode,
  type ConnectorErrorOptions,
  type ConnectorStep,
  type CreateResult,
  type Credential,
  type CredentialValue,
  type RevokeTarget,
  type StepEvidence,
  type TestResult,
} from './connector.js';
export { CommandConnector, validateCommandSettings, DEFAULT_COMMAND_TIMEOUT_MS, EXIT_TEMPFAIL, type CommandSettings, type CommandConnectorDeps } from './command-connector.js';
export {
  HttpConnector,
  validateHttpSettings,
  DEFAULT_HTTP_TIMEOUT_MS,
  type HttpSettings,
  type HttpRequestTemplate,
  type HttpCreateTemplate,
  type HttpConnectorDeps,
} from './http-connector.js';
export {
  PostgresConnector,
  validatePostgresSettings,
  quoteIdentifier,
  scramVerifier,
  scramMatches,
  DEFAULT_POSTGRES_TIMEOUT_MS,
  type PostgresSettings,
  type PostgresConnectorDeps,
} from './postgres-connector.js';
export {
  createConnectorRegistry,
  type ConnectorRegistry,
  type ConnectorRegistryDeps,
} from './registry.js';
export { KeysmithKeyConnector, type KeysmithKeyConnectorDeps } from './keysmith-key-connector.js';
