/**
 * Vault reads in the fast lane (see fast-verify.ts for the idea). `GET /v1/secrets/{path}`
 * with no query string, from a cached token holding `secrets:read` on the path, for a value
 * whose answer the vault has cached, is answered here with the route's own pieces: the same
 * access check, the same serialised answer and read count, the same request ids and headers.
 * Everything else goes to Fastify untouched; a GET has no body, so nothing needs replaying.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KeyService } from '../keys/index.js';
import { secretScope } from '../policy/index.js';
import { assertSecretPath, type SecretService } from '../secrets/index.js';
import { checkAccess } from './plugins/auth.js';
import { sendJson, type FastVerifyLane } from './fast-verify.js';
import { SECRETS_PREFIX, rewriteSecretActionUrl } from './routes/secrets/action-url.js';

export interface FastSecretReadDeps {
  readonly keys: KeyService;
  readonly secrets: SecretService;
  readonly requestId: () => string;
  /** The HTTP request counter for `GET /v1/secrets/*` answered 200. */
  readonly counted: { inc(): void };  /** Whether the address is throttled after failed authentications: such calls are Fastify's to refuse. */
  readonly throttled?: ((ip: string | undefined) => boolean) | undefined;
}

export function createFastSecretReadLane(deps: FastSecretReadDeps): FastVerifyLane {
  let open = true;
  const answer = (req: IncomingMessage, path: string): string | undefined => {
    if (deps.throttled?.(req.socket.remoteAddress) === true) return undefined;
    const access = checkAccess(deps.keys, req.headers.authorization, req.socket.remoteAddress, secretScope('secrets:read', path));
    if (access instanceof Promise) {
      // The token's row is loading: the route's guard waits for the same load and decides.
      access.catch(() => undefined);
      return undefined;
    }
    return access.ok ? deps.secrets.peekJson({ actor: access.principal.id }, path) : undefined;
  };
  return {
    handle(req: IncomingMessage, res: ServerResponse, next) {
      const url = req.url ?? '';
      // Query strings, escapes, trailing slashes and operation URLs are the route's to read.
      if (!open || req.method !== 'GET' || !url.startsWith(SECRETS_PREFIX) || /[?%]|\/$/.test(url) || rewriteSecretActionUrl(url) !== url) {
        return next(req, res);
      }
      let json: string | undefined;
      try {
        json = answer(req, assertSecretPath(url.slice(SECRETS_PREFIX.length)));
      } catch {
        json = undefined; // a malformed path: the route answers the 400
      }
      if (json === undefined) return next(req, res);
      sendJson(res, deps.requestId(), json, deps.counted);
    },
    close() {
      open = false;
    },
  };
}
