/**
 * `/v1/secrets/{path}/{action}`: a secret path has any number of segments, and a router cannot
 * match a wildcard followed by a fixed word. So before routing, the URL of an operation on a
 * secret is rewritten to `/v1/secret-actions/{action}/{path}`, where each action is a route of
 * its own with its own schemas. No secret path may end in an action word (secret-path.ts).
 */
import { SECRET_ACTIONS } from '../../../contract/index.js';

export const SECRETS_PREFIX = '/v1/secrets/';
export const SECRET_ACTIONS_PREFIX = '/v1/secret-actions/';
const ACTIONS: ReadonlySet<string> = new Set(SECRET_ACTIONS);

export function rewriteSecretActionUrl(url: string): string {
  if (!url.startsWith(SECRETS_PREFIX)) return url;
  const q = url.indexOf('?');
  const query = q < 0 ? '' : url.slice(q);
  let path = q < 0 ? url : url.slice(0, q);
  if (path.endsWith('/')) path = path.slice(0, -1);
  const cut = path.lastIndexOf('/');
  if (cut < SECRETS_PREFIX.length) return url;
  const action = path.slice(cut + 1);
  if (!ACTIONS.has(action)) return url;
  return `${SECRET_ACTIONS_PREFIX}${action}/${path.slice(SECRETS_PREFIX.length, cut)}${query}`;
}
