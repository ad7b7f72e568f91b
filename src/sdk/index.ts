export {
  KeysmithClient,
  KeysmithApiError,
  KeysmithConnectionError,
  DEFAULT_ADDR,
  type KeysmithClientOptions,
  type EventsOptions,
  type ProblemWire,
} from './client.js';
export { SseParser, type SseMessage } from './sse.js';
