/** The random source is injected so tests can make ids and secrets deterministic. */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import type { RandomBytes } from '../shared/ids.js';

export const secureRandom: RandomBytes = (size) => nodeRandomBytes(size);
