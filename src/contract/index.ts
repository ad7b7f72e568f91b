export * from './common.js';
export * from './keys.js';
export * from './audit.js';
export * from './secrets.js';
export * from './rotation.js';
export * from './incidents.js';
