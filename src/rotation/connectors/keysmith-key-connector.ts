/**
 * The `keysmith-key` connector: rotates a key Keysmith itself issued, rolling with an overlap.
 *
 *   deliverTo: apps/checkout/api-key   # optional: the vault path consumers read the key from
 *   ttl: 30d                           # optional: the new key's lifetime (default: the old one's)
 *
 * ctx.current.vendorId is the key being rotated. create rotates it: the successor is valid at
 * once and the old key stays valid for the policy's overlap, answering verify with
 * `rotation: { replacedBy, graceEndsAt }`. The successor's id and secret are drawn from a
 * source derived from the run id, so create is idempotent on the run: called again after a
 * crash it re-derives the same key instead of making a second one. test checks the successor
 * is active; it does not verify it, so the traffic gate sees only real consumers' use. revoke
 * revokes the old key (already revoked counts as done).
 */
import type { KeyService } from '../../keys/index.js';
import { isAppError } from '../../shared/errors.js';
import type { RandomBytes } from '../../shared/ids.js';
import { tryParseDuration } from '../../shared/duration.js';
import { SECRET_PATH_PATTERN } from '../../contract/index.js';
import { ConnectorError, type Connector, type ConnectorContext, type CreateResult, type Credential, type RevokeTarget, type StepEvidence, type TestResult } from './connector.js';

export interface KeysmithKeyConnectorDeps {
  readonly keys: Pick<KeyService, 'rotate' | 'replayRotation' | 'get' | 'revoke'>;
  /** A random source determined by the run id (and a server secret), for idempotent creates. */
  readonly randomFor: (runId: string) => RandomBytes;
}

const SETTINGS = new Set(['deliverTo', 'ttl']);
const SECRET_PATH_RE = new RegExp(SECRET_PATH_PATTERN);

export class KeysmithKeyConnector implements Connector {
  readonly type = 'keysmith-key';
  readonly #deps: KeysmithKeyConnectorDeps;

  constructor(deps: KeysmithKeyConnectorDeps) {
    this.#deps = deps;
  }

  validateSettings(settings: unknown): string[] {
    if (settings === null || typeof settings !== 'object' || Array.isArray(settings)) return ['connector.settings must be a map'];
    const problems: string[] = [];
    const given = settings as Record<string, unknown>;
    for (const field of Object.keys(given)) if (!SETTINGS.has(field)) problems.push(`unknown keysmith-key setting "${field.slice(0, 60)}"; use deliverTo or ttl`);
    if (given.deliverTo !== undefined && (typeof given.deliverTo !== 'string' || !SECRET_PATH_RE.test(given.deliverTo))) problems.push('deliverTo must be a secret path such as apps/checkout/api-key');
    if (given.ttl !== undefined && (typeof given.ttl !== 'string' || tryParseDuration(given.ttl) === undefined)) problems.push('ttl must be a duration such as 30d');
    return problems;
  }

  async create(ctx: ConnectorContext): Promise<CreateResult> {
    const oldId = this.#oldId(ctx, 'create');
    const actor = { actor: 'rotation', requestId: ctx.runId };
    const ttl = typeof ctx.settings.ttl === 'string' ? ctx.settings.ttl : undefined;
    try {
      const rotated = await this.#deps.keys.rotate(actor, oldId, { ...(ctx.overlap ? { overlap: ctx.overlap } : {}), ...(ttl ? { ttl } : {}) }, undefined, { random: this.#deps.randomFor(ctx.runId) });
      return this.#created(rotated.record.id, oldId, rotated.key, rotated.previous.graceEndsAt);
    } catch (error) {
      if (isAppError(error) && error.code === 'ERR_KEY_SUPERSEDED') {
        const replay = await this.#deps.keys.replayRotation(oldId, this.#deps.randomFor(ctx.runId));
        if (replay) return this.#created(replay.record.id, oldId, replay.key, replay.previous.graceEndsAt);
      }
      throw this.#refused('create', error);
    }
  }

  async set(): Promise<StepEvidence> {
    return {};
  }

  async test(_ctx: ConnectorContext, credential: Credential): Promise<TestResult> {
    if (credential.vendorId === undefined) return { ok: false, evidence: { reason: 'no key id' } };
    try {
      const record = await this.#deps.keys.get(credential.vendorId);
      return { ok: record.status === 'active', evidence: { keyId: record.id, status: record.status } };
    } catch (error) {
      throw this.#refused('test', error);
    }
  }

  async revoke(ctx: ConnectorContext, old: RevokeTarget): Promise<StepEvidence> {
    if (old.vendorId === undefined) throw new ConnectorError('ERR_CONNECTOR_FAILED', 'keysmith-key revoke needs the key id', { connector: this.type, step: 'revoke', retryable: false });
    try {
      await this.#deps.keys.revoke({ actor: 'rotation', requestId: ctx.runId }, old.vendorId, `rotated by ${ctx.runId}`);
      return { keyId: old.vendorId, revoked: true };
    } catch (error) {
      if (isAppError(error) && error.code === 'ERR_KEY_REVOKED') return { keyId: old.vendorId, revoked: true, already: true };
      throw this.#refused('revoke', error);
    }
  }

  #created(newId: string, oldId: string, key: string, graceEndsAt: string | null): CreateResult {
    return { credential: { value: key, vendorId: newId }, evidence: { keyId: newId, replaces: oldId, graceEndsAt } };
  }

  #oldId(ctx: ConnectorContext, step: 'create'): string {
    const id = ctx.current?.vendorId;
    if (id === undefined) throw new ConnectorError('ERR_CONNECTOR_FAILED', 'keysmith-key needs the key to rotate', { connector: this.type, step, retryable: false });
    return id;
  }

  #refused(step: 'create' | 'test' | 'revoke', error: unknown): ConnectorError {
    if (error instanceof ConnectorError) return error;
    const message = isAppError(error) ? error.message : 'the key store failed';
    // A refusal by the key store (revoked, expired, not found) will not change on a retry; anything else may.
    return new ConnectorError(isAppError(error) ? 'ERR_CONNECTOR_REJECTED' : 'ERR_CONNECTOR_FAILED', `keysmith-key ${step}: ${message}`, {
      connector: this.type,
      step,
      retryable: !isAppError(error),
      cause: error,
    });
  }
}
