export {
  KeysmithClient,
  KeysmithApiError,
  KeysmithConnectionError,
  DEFAULT_ADDR,
  type KeysmithClientOptions,
  type ProblemWire,
} from './client.js';
