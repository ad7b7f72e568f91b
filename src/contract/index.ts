export * from './common.js';
export * from './keys.js';
export * from './audit.js';
export * from './secrets.js';
export * from './rotation.js';
export * from './rotation-runs.js';
export * from './events.js';
export * from './incidents.js';
