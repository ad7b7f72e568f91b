/**
 * Secret paths: lowercase segments of letters, digits, `-`, `_`, `.`, joined by `/`. An
 * operation on a secret is a last segment after its path (`…/versions`), so no secret may
 * end in one of those words.
 */
import { SECRET_ACTIONS, SECRET_PATH_MAX, SECRET_PATH_PATTERN, type SecretAction } from '../contract/index.js';
import { AppError } from '../shared/errors.js';

const PATH_RE = new RegExp(SECRET_PATH_PATTERN);
const ACTIONS: ReadonlySet<string> = new Set(SECRET_ACTIONS);

export interface SecretTarget {
  readonly path: string;
  readonly action: SecretAction | undefined;
}

/** Splits `payments/stripe/api-key/versions` into the path and the action named after it. */
export function parseSecretTarget(raw: string): SecretTarget {
  const trimmed = raw.endsWith('/') ? raw.slice(0, -1) : raw;
  const cut = trimmed.lastIndexOf('/');
  const last = trimmed.slice(cut + 1);
  if (cut > 0 && ACTIONS.has(last)) return { path: assertSecretPath(trimmed.slice(0, cut)), action: last as SecretAction };
  return { path: assertSecretPath(trimmed), action: undefined };
}

export function assertSecretPath(path: string): string {
  if (path.length === 0 || path.length > SECRET_PATH_MAX || !PATH_RE.test(path)) {
    throw new AppError(
      'ERR_SECRET_PATH_INVALID',
      `a secret path is 1 to ${SECRET_PATH_MAX} characters of lowercase segments (a-z, 0-9, "-", "_", ".") joined by "/"`,
      { details: [{ field: 'path', message: 'not a valid secret path' }] },
    );
  }
  if (path.split('/').some((segment) => /^\.+$/.test(segment))) {
    throw new AppError('ERR_SECRET_PATH_INVALID', 'a secret path segment may not be only dots', {
      details: [{ field: 'path', message: 'a segment is only dots' }],
    });
  }
  const last = path.slice(path.lastIndexOf('/') + 1);
  if (ACTIONS.has(last)) {
    throw new AppError('ERR_SECRET_PATH_INVALID', `a secret path may not end in "${last}": it names an operation`, {
      details: [{ field: 'path', message: `ends in the reserved word "${last}"` }],
    });
  }
  return path;
}
