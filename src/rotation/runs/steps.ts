/**
 * What each step of a run does to the world, for the two kinds of target. A step reads the run's
 * state, acts (through a connector, the vault or the key store) and says what comes next; the
 * engine persists that. Every step can be run again after a crash: create is idempotent on the
 * run id, promote and the undo steps look before they move, set and test are safe to repeat.
 */
import type { ActorContext } from '../../audit/index.js';
import type { KeyService } from '../../keys/index.js';
import type { Outbound } from '../../outbound/index.js';
import type { SecretService, SecretValue } from '../../secrets/index.js';
import { isAppError } from '../../shared/errors.js';
import type { RandomBytes } from '../../shared/ids.js';
import { parseDuration, tryParseDuration } from '../../shared/duration.js';
import {
  ConnectorError,
  evidenceText,
  secretStrings,
  type Connector,
  type ConnectorContext,
  type Credential,
  type CredentialValue,
  type StepEvidence,
} from '../connectors/connector.js';
import type { RotationPolicy } from '../policy.js';
import { policyReads } from '../policy-grant.js';
import { healthGate, probeOnce, runDeployHook, type CheckTiming } from './checks.js';
import type { RevocationCredential, RunState, RunStep, RunStatus, TargetKind } from './run-model.js';

/** What a step asks the engine to do next. */
export type StepOutcome =
  | { readonly kind: 'next'; readonly step: RunStep; readonly state?: Partial<RunState>; readonly evidence: StepEvidence; readonly promotedAt?: string }
  | { readonly kind: 'wait'; readonly untilMs: number; readonly state?: Partial<RunState>; readonly evidence?: StepEvidence; readonly note?: boolean }
  | { readonly kind: 'fail'; readonly message: string; readonly evidence: StepEvidence }
  | {
      readonly kind: 'end';
      readonly status: RunStatus;
      readonly state?: Partial<RunState>;
      readonly evidence: StepEvidence;
      readonly revoke?: { readonly which: 'old' | 'new'; readonly credential: RevocationCredential; readonly notBeforeMs: number };
      readonly alert?: string;
    };

export interface StepDeps {
  readonly keys: KeyService;
  readonly secrets: SecretService;
  readonly connector: (type: string) => Connector;
  readonly now: () => number;
  readonly checks: CheckTiming;
  /** The operator's egress allowlist and program registry, for health checks and deploy hooks. */
  readonly outbound: Outbound;
  /** How often the traffic gate looks at key use while it waits. */
  readonly trafficCheckMs: number;
  readonly defaultQuietPeriodMs: number;
  /** The random source a keysmith-key create draws from for a run (see KeysmithKeyConnector). */
  readonly randomFor: (runId: string) => RandomBytes;
}

export interface StepInput {
  readonly runId: string;
  readonly kind: TargetKind;
  readonly target: string;
  readonly policy: RotationPolicy;
  readonly state: RunState;
  readonly signal: AbortSignal;
}

const ACTOR = (runId: string): ActorContext => ({ actor: 'rotation', requestId: runId });

export class RunSteps {
  readonly #deps: StepDeps;
  /** Every value a run read or made while this server advanced it, so its failures can be scrubbed of them. */
  readonly #seen = new Map<string, unknown[]>();

  constructor(deps: StepDeps) {
    this.#deps = deps;
  }

  #remember(runId: string, value: unknown): void {
    const values = this.#seen.get(runId);
    if (values) values.push(value);
    else this.#seen.set(runId, [value]);
  }

  /** The values run `runId` read or made here so far (vault values, new credentials). */
  valuesSeen(runId: string): readonly unknown[] {
    return this.#seen.get(runId) ?? [];
  }

  /** Drops what run `runId` saw, once its failures are written. */
  forget(runId: string): void {
    this.#seen.delete(runId);
  }

  async run(step: RunStep, input: StepInput): Promise<StepOutcome> {
    switch (step) {
      case 'create':
        return this.#create(input);
      case 'set':
        return this.#set(input);
      case 'test':
        return this.#test(input);
      case 'promote':
        return this.#promote(input);
      case 'deploy':
        return this.#deploy(input);
      case 'gate':
        return this.#gate(input);
      case 'finish':
        return this.#finish(input);
      case 'discard':
      case 'rollback':
        return this.#undo(step, input);
    }
  }

  /** The connector context for a run; `current` as given. */
  context(input: StepInput, current?: Credential): ConnectorContext {
    // The vault paths the policy names in its read fields are the only ones its connector may read:
    // the same list its author's grant was checked against (policyReads), never any other string.
    const allowed = new Set(policyReads(input.policy).map((read) => read.path));
    const secrets = this.#deps.secrets;
    const remember = (value: unknown) => this.#remember(input.runId, value);
    const type = input.policy.connector.type;
    return {
      runId: input.runId,
      settings: input.policy.connector.settings ?? {},
      overlap: input.policy.overlap,
      signal: input.signal,
      ...(current ? { current } : {}),
      async readSecret(path: string): Promise<CredentialValue> {
        if (!allowed.has(path)) throw new ConnectorError('ERR_CONNECTOR_FAILED', `${type} may read only the vault paths its settings name`, { connector: type, retryable: false });
        const value = (await secrets.read(ACTOR(input.runId), path)).value as CredentialValue;
        remember(value);
        return value;
      },
    };
  }

  /** The credential a vault version holds, with its vendor id. */
  async credentialAt(path: string, version: number | undefined, vendorId: string | undefined, runId: string): Promise<Credential | undefined> {
    if (version === undefined) return vendorId === undefined ? undefined : { value: '', vendorId };
    const read = await this.#deps.secrets.read(ACTOR(runId), path, { version });
    this.#remember(runId, read.value);
    return { value: read.value as CredentialValue, ...(vendorId !== undefined ? { vendorId } : {}) };
  }

  #connector(input: StepInput): Connector {
    return this.#deps.connector(input.policy.connector.type);
  }

  /** The vault path the new credential goes to: the secret itself, or where a key is delivered. */
  #deliverPath(input: Pick<StepInput, 'kind' | 'target' | 'policy' | 'runId'>): string {
    if (input.kind === 'secret') return input.target;
    const configured = input.policy.connector.settings?.deliverTo;
    return typeof configured === 'string' ? configured : `rotated-keys/${input.runId.toLowerCase()}`;
  }

  /** Where this run's new credential is: the path create recorded, or where it would record it. */
  #deliveredTo(input: StepInput): string {
    return input.state.deliverTo ?? this.#deliverPath(input);
  }

  async #create(input: StepInput): Promise<StepOutcome> {
    const path = this.#deliverPath(input);
    let current: Credential | undefined;
    let old: Partial<RunState>;
    if (input.kind === 'key') {
      old = { oldVendorId: input.target };
      current = { value: '', vendorId: input.target };
    } else {
      const found = await this.#currentVersion(path);
      old = found ? { oldVersion: found.version, ...(found.vendorId !== null ? { oldVendorId: found.vendorId } : {}) } : {};
      current = found ? await this.credentialAt(path, found.version, found.vendorId ?? undefined, input.runId) : undefined;
    }
    const created = await this.#connector(input).create(this.context(input, current));
    this.#remember(input.runId, created.credential.value);
    // A vendor id is shown to every rotation:read token and put in URLs: it may not carry the
    // credential (a template's `id: $.secret`, or a vendor answering the key as its id).
    const { value: newValue, vendorId: newVendorId } = created.credential;
    if (typeof newValue === 'string' && newValue !== '' && newVendorId !== undefined && newVendorId.includes(newValue)) {
      throw new ConnectorError('ERR_CONNECTOR_BAD_RESPONSE', 'the vendor id is the new credential: set the id to a field that names the key, not the key itself', {
        connector: input.policy.connector.type,
        step: 'create',
        retryable: false,
      });
    }
    const value = created.credential.value as SecretValue;
    const version = await this.#putPending(input.runId, path, value, created.credential.vendorId);
    const overlapEndsAt = input.kind === 'key' ? (await this.#deps.keys.get(input.target)).graceEndsAt ?? undefined : undefined;
    return {
      kind: 'next',
      step: 'set',
      state: { ...old, newVendorId: created.credential.vendorId, newVersion: version, deliverTo: path, ...(overlapEndsAt ? { overlapEndsAt } : {}) },
      evidence: { ...created.evidence, version, ...(created.credential.vendorId !== undefined ? { vendorId: created.credential.vendorId } : {}) },
    };
  }

  async #currentVersion(path: string): Promise<{ version: number; vendorId: string | null } | undefined> {
    try {
      const { versions } = await this.#deps.secrets.versions(path);
      const current = versions.find((version) => version.stages.includes('current'));
      return current ? { version: current.version, vendorId: current.vendorId } : undefined;
    } catch (error) {
      if (isAppError(error) && error.code === 'ERR_SECRET_NOT_FOUND') return undefined;
      throw error;
    }
  }

  /**
   * Stages the new credential as pending. The run id is the put's request token, so a create
   * repeated after a crash with the same value adds no version; a connector that answers a
   * repeated create with a new value (postgres sets the password again) gets a new pending version.
   */
  async #putPending(runId: string, path: string, value: SecretValue, vendorId: string | undefined): Promise<number> {
    const input = { value, stage: 'pending' as const, ...(vendorId !== undefined ? { vendorId } : {}) };
    try {
      return (await this.#deps.secrets.put(ACTOR(runId), path, { ...input, requestToken: runId })).version;
    } catch (error) {
      if (isAppError(error) && error.code === 'ERR_SECRET_REQUEST_TOKEN_REUSED') return (await this.#deps.secrets.put(ACTOR(runId), path, input)).version;
      throw error;
    }
  }

  async #newCredential(input: StepInput): Promise<Credential> {
    const credential = await this.credentialAt(this.#deliveredTo(input), input.state.newVersion, input.state.newVendorId, input.runId);
    if (!credential) throw new ConnectorError('ERR_CONNECTOR_FAILED', 'the run has no new credential', { connector: input.policy.connector.type, retryable: false });
    return credential;
  }

  async #oldCredential(input: StepInput): Promise<Credential | undefined> {
    if (input.kind === 'key') return { value: '', vendorId: input.target };
    return this.credentialAt(input.target, input.state.oldVersion, input.state.oldVendorId, input.runId);
  }

  async #set(input: StepInput): Promise<StepOutcome> {
    const evidence = await this.#connector(input).set(this.context(input, await this.#oldCredential(input)), await this.#newCredential(input));
    return { kind: 'next', step: 'test', evidence };
  }

  async #test(input: StepInput): Promise<StepOutcome> {
    const tested = await this.#connector(input).test(this.context(input, await this.#oldCredential(input)), await this.#newCredential(input));
    const checks = await probeOnce(this.#deps.outbound.egress, input.policy.healthChecks, this.#deps.checks, input.signal);
    const evidence = { ...tested.evidence, connectorOk: tested.ok, ...checks.evidence };
    if (!tested.ok) return { kind: 'fail', message: 'the connector test of the new credential failed', evidence };
    if (!checks.ok) return { kind: 'fail', message: 'a health check failed with the new credential', evidence };
    return { kind: 'next', step: 'promote', evidence };
  }

  async #promote(input: StepInput): Promise<StepOutcome> {
    const path = this.#deliveredTo(input);
    const stages = await this.#stages(path);
    if (stages.get('current') !== input.state.newVersion) {
      if (stages.get('pending') !== input.state.newVersion) return { kind: 'fail', message: `the new version ${input.state.newVersion} of ${path} is no longer pending`, evidence: {} };
      await this.#deps.secrets.promote(ACTOR(input.runId), path);
    }
    const now = this.#deps.now();
    const overlapMs = parseDuration(input.policy.overlap, 'overlap');
    const overlapEndsAt = input.kind === 'key' ? input.state.overlapEndsAt : new Date(now + overlapMs).toISOString();
    return {
      kind: 'next',
      step: input.policy.deployHook ? 'deploy' : 'gate',
      state: { ...(overlapEndsAt ? { overlapEndsAt } : {}) },
      evidence: { version: input.state.newVersion ?? null, path },
      promotedAt: new Date(now).toISOString(),
    };
  }

  async #stages(path: string): Promise<Map<string, number>> {
    const metadata = await this.#deps.secrets.metadata(path);
    return new Map(Object.entries(metadata.stages));
  }

  async #deploy(input: StepInput): Promise<StepOutcome> {
    const notice = {
      event: 'rotation.promoted',
      runId: input.runId,
      policy: input.policy.name,
      target: { kind: input.kind, id: input.target },
      path: input.state.deliverTo ?? null,
      version: input.state.newVersion ?? null,
      keyId: input.kind === 'key' ? input.state.newVendorId ?? null : null,
      overlapEndsAt: input.state.overlapEndsAt ?? null,
    };
    const secrets = input.state.newVersion === undefined ? [] : secretStrings((await this.#newCredential(input)).value);
    const hooked = await runDeployHook(this.#deps.outbound, input.policy.deployHook!, notice, secrets, input.signal);
    if (!hooked.ok) {
      throw new ConnectorError('ERR_CONNECTOR_FAILED', `the deploy hook did not succeed (${evidenceText(hooked.evidence)})`, { connector: 'deploy-hook', retryable: true });
    }
    return { kind: 'next', step: 'gate', evidence: hooked.evidence };
  }

  async #gate(input: StepInput): Promise<StepOutcome> {
    let evidence: StepEvidence = {};
    if (input.state.healthy !== true && input.policy.healthChecks.length > 0) {
      const gate = await healthGate(this.#deps.outbound.egress, input.policy.healthChecks, this.#deps.checks, this.#deps.now, input.signal);
      if (!gate.ok) return { kind: 'fail', message: 'the health gate failed after promote', evidence: gate.evidence };
      evidence = gate.evidence;
    }
    if (input.kind === 'secret') {
      const notBeforeMs = Date.parse(input.state.overlapEndsAt ?? new Date(this.#deps.now()).toISOString());
      return { kind: 'end', status: 'done', state: { healthy: true }, evidence: { ...evidence, revokeOldAt: new Date(notBeforeMs).toISOString() }, revoke: this.#revokeOld(input, notBeforeMs) };
    }
    return this.#trafficGate(input, evidence);
  }

  /**
   * The traffic gate: the new key has been verified and the old one has not been for the quiet
   * period. Until then the run waits (persisted, so it survives restarts); when the overlap ends
   * first, the policy decides: revoke anyway, extend (up to maxExtension) or keep and alert.
   */
  async #trafficGate(input: StepInput, healthEvidence: StepEvidence): Promise<StepOutcome> {
    const now = this.#deps.now();
    const oldId = input.target;
    const newId = input.state.newVendorId!;
    const quietMs = tryParseDuration(input.policy.quietPeriod ?? '') ?? this.#deps.defaultQuietPeriodMs;
    const used = await this.#deps.keys.lastUsed([oldId, newId]);
    const oldLast = used.get(oldId);
    const newLast = used.get(newId);
    const oldQuiet = oldLast === undefined || Date.parse(oldLast) <= now - quietMs;
    const evidence: StepEvidence = { ...healthEvidence, newKeyLastUsedAt: newLast ?? null, oldKeyLastUsedAt: oldLast ?? null, quietPeriodMs: quietMs };
    if (newLast !== undefined && oldQuiet) {
      return { kind: 'end', status: 'done', state: { healthy: true }, evidence: { ...evidence, trafficMoved: true }, revoke: this.#revokeOld(input, now) };
    }
    const old = await this.#deps.keys.get(oldId);
    const graceEndsMs = old.graceEndsAt === null ? now : Date.parse(old.graceEndsAt);
    if (old.status === 'revoked') return { kind: 'end', status: 'done', state: { healthy: true }, evidence: { ...evidence, oldAlreadyRevoked: true } };
    if (now < graceEndsMs) {
      // While the old key is still used, look again when it could have gone quiet.
      const nextLook = oldLast === undefined ? now + this.#deps.trafficCheckMs : Math.max(Date.parse(oldLast) + quietMs, now + 1000);
      return { kind: 'wait', untilMs: Math.min(graceEndsMs, nextLook, now + this.#deps.trafficCheckMs), state: { healthy: true }, evidence };
    }
    const action = input.policy.onOverlapEnd;
    if (action === 'revoke') {
      return { kind: 'end', status: 'done', state: { healthy: true }, evidence: { ...evidence, trafficMoved: false, onOverlapEnd: 'revoked' }, revoke: this.#revokeOld(input, now) };
    }
    const maxExtensionMs = tryParseDuration(input.policy.maxExtension ?? '') ?? parseDuration(input.policy.overlap, 'overlap');
    const extended = input.state.extendedMs ?? 0;
    if (action === 'extend' && extended < maxExtensionMs) {
      const step = Math.min(maxExtensionMs - extended, parseDuration(input.policy.overlap, 'overlap'));
      const until = new Date(now + step).toISOString();
      const record = await this.#deps.keys.extendGrace(ACTOR(input.runId), oldId, until, `the old key is still in use; extended by ${input.runId}`);
      return { kind: 'wait', untilMs: now + 1000, state: { healthy: true, extendedMs: extended + step, overlapEndsAt: record.graceEndsAt ?? until }, evidence: { ...evidence, extendedTo: record.graceEndsAt }, note: true };
    }
    // keep: the old key stays valid to its own expiry, and a person is told.
    await this.#deps.keys.extendGrace(ACTOR(input.runId), oldId, old.expiresAt, `the old key is still in use; kept by ${input.runId}`);
    return {
      kind: 'end',
      status: 'done',
      state: { healthy: true, kept: true },
      evidence: { ...evidence, trafficMoved: false, onOverlapEnd: action === 'extend' ? 'extension limit reached; kept' : 'kept' },
      alert: `the old key ${oldId} is still in use after the overlap; it was kept, not revoked`,
    };
  }

  #revokeOld(input: StepInput, notBeforeMs: number): { which: 'old'; credential: RevocationCredential; notBeforeMs: number } {
    const credential = input.kind === 'key' ? { vendorId: input.target } : { vendorId: input.state.oldVendorId, version: input.state.oldVersion };
    return { which: 'old', credential, notBeforeMs };
  }

  async #finish(input: StepInput): Promise<StepOutcome> {
    return { kind: 'end', status: 'done', evidence: {}, revoke: this.#revokeOld(input, this.#deps.now()) };
  }

  /**
   * The way back. discard (before promote) and rollback (after) both make the old credential
   * current again and retire the new one: a key's rotation is undone in the key store (its
   * successor revoked, the old key no longer superseded); a secret's vault stages move back
   * and the new credential is queued for revocation at the vendor.
   */
  async #undo(step: 'discard' | 'rollback', input: StepInput): Promise<StepOutcome> {
    const status: RunStatus = step === 'discard' ? 'failed' : 'rolled_back';
    const path = this.#deliveredTo(input);
    const evidence: Record<string, string | number | boolean | null> = {};
    if (input.kind === 'key') {
      const successor = input.state.newVendorId ?? (await this.#derivedSuccessor(input));
      if (successor !== undefined) {
        await this.#deps.keys.undoRotation(ACTOR(input.runId), input.target, successor, `rotation ${input.runId} ${step === 'discard' ? 'failed' : 'rolled back'}`);
        evidence.revokedKey = successor;
      }
    }
    if (input.state.newVersion !== undefined) {
      const stages = await this.#stages(path).catch(() => new Map<string, number>());
      if (stages.get('current') === input.state.newVersion && stages.has('previous')) {
        await this.#deps.secrets.rollback(ACTOR(input.runId), path);
        evidence.restoredVersion = stages.get('previous') ?? null;
      } else if (stages.get('pending') === input.state.newVersion) {
        await this.#deps.secrets.discardPending(ACTOR(input.runId), path, input.state.newVersion);
        evidence.discardedVersion = input.state.newVersion;
      }
    }
    const revokeNew = input.kind === 'secret' && input.state.newVersion !== undefined;
    return {
      kind: 'end',
      status,
      evidence,
      ...(revokeNew ? { revoke: { which: 'new' as const, credential: { vendorId: input.state.newVendorId, version: input.state.newVersion }, notBeforeMs: this.#deps.now() } } : {}),
    };
  }

  /** The successor this run's create made, if it made one before a crash kept the run from recording it. */
  async #derivedSuccessor(input: StepInput): Promise<string | undefined> {
    const replay = await this.#deps.keys.replayRotation(input.target, this.#deps.randomFor(input.runId));
    return replay?.record.id;
  }

  /** Revokes one credential a run owes; throws (to be retried) when the vendor refuses. */
  async revoke(input: StepInput, which: 'old' | 'new', credential: RevocationCredential): Promise<StepEvidence> {
    const path = this.#deliveredTo(input);
    const connector = this.#connector(input);
    if (input.kind === 'key') return connector.revoke(this.context(input), { vendorId: credential.vendorId ?? input.target });
    // The credential that stays in use, which a connector must not touch (postgres refuses to).
    const staying = which === 'old' ? await this.#newCredential(input) : await this.#oldCredential(input);
    const going = await this.credentialAt(path, credential.version, credential.vendorId, input.runId).catch(() => undefined);
    return connector.revoke(this.context(input, staying), { ...(credential.vendorId !== undefined ? { vendorId: credential.vendorId } : {}), ...(going ? { value: going.value } : {}) });
  }
}
