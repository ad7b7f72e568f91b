/**
 * The incident selector, shared by the CLI and the API: a comma-separated AND of criteria,
 * `owner=alice,label=team=payments,env=live,key=key_…,createdBefore=2026-11-01T00:00:00Z`.
 * A field given more than once is an OR within that field (`key=a,key=b`; `label=team=a,label=team=b`);
 * different label names are ANDed. Pure: no I/O, so a refusal costs nothing and names the part.
 * An empty selector is refused: "everything" must never be one typo away.
 */
import { AppError } from '../shared/errors.js';
import { isKeyId } from '../shared/ids.js';
import type { KeyEnv } from './key-format.js';

export interface IncidentSelector {
  readonly owners: readonly string[];
  readonly envs: readonly KeyEnv[];
  /** Label name → the values any of which matches. */
  readonly labels: Readonly<Record<string, readonly string[]>>;
  readonly keyIds: readonly string[];
  /** RFC 3339 UTC; keys created strictly before it. */
  readonly createdBefore: string | null;
}

/** At most this many `key=` criteria: one bound parameter each, under every dialect's limit. */
export const MAX_SELECTOR_KEY_IDS = 10_000;
/** Longest selector text: ten thousand key ids and some change. */
export const MAX_SELECTOR_LENGTH = 400_000;

const FIELDS = ['owner', 'env', 'label', 'key', 'createdBefore'] as const;
const LABEL_NAME_RE = /^[a-z0-9][a-z0-9._/-]{0,62}$/;
const PRINTABLE_RE = /^[^\u0000-\u001f\u007f]*$/;
const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;
/** Something shaped like an issued key: never echoed back. */
const KEY_LIKE_RE = /_(live|test)_[0-9A-Za-z]{10,}/;

const EXAMPLE = 'for example owner=alice,env=live or label=team=payments,createdBefore=2026-11-01T00:00:00Z';

function refuse(message: string): AppError {
  return new AppError('ERR_INCIDENT_SELECTOR_INVALID', message, { details: [{ field: 'select', message }] });
}

/** A part of the input, safe to quote in an error: short, and never a key. */
function quote(text: string): string {
  if (KEY_LIKE_RE.test(text)) return '(a value that looks like a key; give key ids, key_…, never keys)';
  const short = text.length > 60 ? `${text.slice(0, 60)}…` : text;
  return `"${short.replace(/[\u0000-\u001f\u007f]/g, '?')}"`;
}

/** Parses selector text; throws ERR_INCIDENT_SELECTOR_INVALID (400) naming the first bad part. */
export function parseSelector(text: string): IncidentSelector {
  if (text.length > MAX_SELECTOR_LENGTH) throw refuse(`the selector is longer than ${MAX_SELECTOR_LENGTH} characters`);
  const trimmed = text.trim();
  if (trimmed === '') {
    throw refuse(`the selector is empty: name at least one of ${FIELDS.map((f) => (f === 'label' ? 'label=k=v' : `${f}=`)).join(', ')} (${EXAMPLE})`);
  }
  const owners = new Set<string>();
  const envs = new Set<KeyEnv>();
  const labels = new Map<string, Set<string>>();
  const keyIds = new Set<string>();
  let createdBefore: string | null = null;
  for (const raw of trimmed.split(',')) {
    const part = raw.trim();
    if (part === '') throw refuse(`the selector has an empty criterion (two commas, or one at the end); ${EXAMPLE}`);
    const at = part.indexOf('=');
    const field = at === -1 ? part : part.slice(0, at);
    const value = at === -1 ? '' : part.slice(at + 1).trim();
    if (!(FIELDS as readonly string[]).includes(field.trim())) {
      throw refuse(`unknown selector field ${quote(field)}; the fields are ${FIELDS.join(', ')} (${EXAMPLE})`);
    }
    if (value === '') throw refuse(`${field.trim()}= needs a value (${EXAMPLE})`);
    if (!PRINTABLE_RE.test(value)) throw refuse(`${field.trim()}= has control characters in its value`);
    switch (field.trim() as (typeof FIELDS)[number]) {
      case 'owner':
        if (value.length > 200) throw refuse('owner= is longer than 200 characters');
        owners.add(value);
        break;
      case 'env':
        if (value !== 'live' && value !== 'test') throw refuse(`env= must be live or test, not ${quote(value)}`);
        envs.add(value);
        break;
      case 'label': {
        const eq = value.indexOf('=');
        const name = eq === -1 ? value : value.slice(0, eq).trim();
        const labelValue = eq === -1 ? '' : value.slice(eq + 1).trim();
        if (eq === -1 || labelValue === '') throw refuse(`label= takes name=value, as in label=team=payments; got ${quote(value)}`);
        if (!LABEL_NAME_RE.test(name)) throw refuse(`label name ${quote(name)} is not a label name (lowercase letters, digits, ".", "_", "/", "-")`);
        if (labelValue.length > 256) throw refuse(`the value of label ${name} is longer than 256 characters`);
        const values = labels.get(name) ?? new Set<string>();
        values.add(labelValue);
        labels.set(name, values);
        break;
      }
      case 'key':
        if (!isKeyId(value)) {
          throw refuse(
            KEY_LIKE_RE.test(value)
              ? 'key= takes a key id (key_ followed by 22 letters and digits), never a key itself'
              : `key= takes a key id (key_ followed by 22 letters and digits), not ${quote(value)}`,
          );
        }
        keyIds.add(value);
        if (keyIds.size > MAX_SELECTOR_KEY_IDS) throw refuse(`the selector names more than ${MAX_SELECTOR_KEY_IDS} key ids; split the incident`);
        break;
      case 'createdBefore': {
        if (createdBefore !== null) throw refuse('createdBefore= is given more than once');
        const ms = RFC3339_RE.test(value) ? Date.parse(value) : Number.NaN;
        if (!Number.isFinite(ms)) throw refuse(`createdBefore= must be an RFC 3339 time such as 2026-11-01T00:00:00Z, not ${quote(value)}`);
        createdBefore = new Date(ms).toISOString();
        break;
      }
    }
  }
  return {
    owners: [...owners],
    envs: [...envs],
    labels: Object.fromEntries([...labels.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, values]) => [name, [...values]])),
    keyIds: [...keyIds],
    createdBefore,
  };
}

/** The selector in its canonical text form: fields in a fixed order, duplicates gone. */
export function formatSelector(selector: IncidentSelector): string {
  return [
    ...selector.owners.map((owner) => `owner=${owner}`),
    ...selector.envs.map((env) => `env=${env}`),
    ...Object.entries(selector.labels).flatMap(([name, values]) => values.map((value) => `label=${name}=${value}`)),
    ...selector.keyIds.map((id) => `key=${id}`),
    ...(selector.createdBefore !== null ? [`createdBefore=${selector.createdBefore}`] : []),
  ].join(',');
}
