/**
 * What a run may say about a failure: a short summary (status, error class, the program's or
 * vendor's words) with every value the run read or produced removed, and anything that looks
 * like a key removed too, whoever's it is: a Keysmith key (told by its checksum), a PEM block,
 * a long base64 or hex run. A program can print anything it can read (the master key file, an
 * environment) to its standard error; only this summary ever leaves the process.
 */
import { parseKey } from '../keys/index.js';
import { isAppError } from '../shared/errors.js';
import { scrub, secretStrings } from './connectors/connector.js';

/** The longest failure text a run records (its error, a timeline entry, an event). */
export const MAX_FAILURE_CHARS = 300;

const REDACTED = '[redacted]';
const PEM_BLOCK = /-----BEGIN [A-Z0-9 ]{1,40}-----[\s\S]*?(?:-----END [A-Z0-9 ]{1,40}-----|$)/g;
/** Keysmith's key shape; parseKey confirms the checksum. */
const KEYSMITH_KEY = /[a-z][a-z0-9]{1,15}_(?:live|test)_[0-9A-Za-z]{22}_[0-9A-Za-z]{49}/g;
const HEX_RUN = /[0-9A-Fa-f]{32,}/g;
/** Standard and URL-safe base64, with padding. */
const BASE64_RUN = /[A-Za-z0-9+/_-]{32,}={0,2}/g;

/** Whether a long base64-alphabet run looks like key material rather than a path or a word. */
function looksRandom(run: string): boolean {
  // Paths and prose (`payments/stripe/production/api-key`) are one case and have no digits.
  return /[0-9]/.test(run) || (/[A-Z]/.test(run) && /[a-z]/.test(run)) || /[+=]/.test(run);
}

/**
 * Removes from `text` every known value (each string inside the values, and its URL- and
 * JSON-encoded forms) and everything that looks like a key.
 */
export function scrubText(text: string, known: readonly unknown[] = []): string {
  let result = scrub(text, secretStrings(...(known as Parameters<typeof secretStrings>)));
  result = result.replace(PEM_BLOCK, '[redacted PEM block]');
  result = result.replace(KEYSMITH_KEY, (match) => (parseKey(match) !== undefined ? '[redacted key]' : match));
  result = result.replace(HEX_RUN, REDACTED);
  result = result.replace(BASE64_RUN, (match) => (looksRandom(match) ? REDACTED : match));
  return result;
}

/** Cuts text to `max` characters, marked when cut. */
export function bounded(text: string, max = MAX_FAILURE_CHARS): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * A failure as a run records it: a Keysmith error's code and message (a connector's carries the
 * status and the program's or vendor's words), or only the class of anything else (whose message
 * nobody vetted), scrubbed and at most MAX_FAILURE_CHARS long.
 */
export function summariseFailure(error: unknown, known: readonly unknown[] = [], what = 'the step'): string {
  const text = isAppError(error) ? error.message : `${what} failed unexpectedly (${error instanceof Error ? error.name : typeof error})`;
  return bounded(scrubText(text, known));
}

/** A recorded text (an alert, a step's failure message) made safe to keep. */
export function safeSummary(text: string, known: readonly unknown[] = []): string {
  return bounded(scrubText(text, known));
}
