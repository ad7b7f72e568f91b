/**
 * The vocabulary of rotation runs: steps, statuses, what a run remembers between steps, and the
 * records the API shows. Nothing here holds a credential: a run names versions and vendor ids,
 * and reads values from the vault when a step needs them.
 */
import type { RotationPolicy } from '../policy.js';
import type { StepEvidence } from '../connectors/connector.js';
import type { RotationRunsTable, RotationRunStepsTable, RotationRevocationsTable } from '../../store/index.js';

/** Forward steps, then the two ways back. */
export const RUN_STEPS = ['create', 'set', 'test', 'promote', 'deploy', 'gate', 'finish', 'discard', 'rollback'] as const;
export type RunStep = (typeof RUN_STEPS)[number];

export const RUN_STATUSES = ['running', 'done', 'failed', 'rolled_back'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const RUN_TRIGGERS = ['schedule', 'manual', 'event', 'incident'] as const;
export type RunTrigger = (typeof RUN_TRIGGERS)[number];

/** The steps before promote: failing in one discards the pending credential. */
export const BEFORE_PROMOTE: ReadonlySet<RunStep> = new Set(['create', 'set', 'test']);

export type TargetKind = 'key' | 'secret';

/** What a run has learnt so far, persisted with each step. */
export interface RunState {
  /** The credential being replaced: a key id, or the vault version (and its vendor id). */
  oldVendorId?: string | undefined;
  oldVersion?: number | undefined;
  /** The credential the run made. */
  newVendorId?: string | undefined;
  newVersion?: number | undefined;
  /** The vault path the new credential is delivered to (the secret, or a key's deliverTo). */
  deliverTo?: string | undefined;
  overlapEndsAt?: string | undefined;
  /** The health gate's checks passed; later visits of the gate only watch traffic. */
  healthy?: boolean | undefined;
  /** How long the overlap has been extended for (onOverlapEnd: extend). */
  extendedMs?: number | undefined;
  /** The old credential was kept (onOverlapEnd: keep, or an extension limit reached). */
  kept?: boolean | undefined;
  /** The step the run last waited in (a wait is put on the timeline once, not at every look). */
  waitingIn?: RunStep | undefined;
  /** Why the run turned back. */
  failedStep?: RunStep | undefined;
  /** The token (key id) the policy runs as: its author when the run started; re-checked before create. */
  author?: string | undefined;
}

export interface RunTarget {
  readonly kind: TargetKind;
  /** A key id or a secret path. */
  readonly id: string;
}

export interface RunRecord {
  readonly id: string;
  readonly policy: string | null;
  readonly policyVersion: number | null;
  readonly target: RunTarget;
  readonly connector: string;
  readonly trigger: RunTrigger;
  readonly reason: string | null;
  readonly scheduledFor: string | null;
  readonly status: RunStatus;
  readonly step: RunStep;
  readonly attempts: number;
  readonly nextAt: string | null;
  readonly error: string | null;
  readonly oldCredential: { readonly vendorId: string | null; readonly version: number | null };
  readonly newCredential: { readonly vendorId: string | null; readonly version: number | null };
  readonly deliveredTo: string | null;
  readonly overlapEndsAt: string | null;
  readonly oldKept: boolean;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly updatedAt: string;
  readonly promotedAt: string | null;
  readonly finishedAt: string | null;
}

export interface RunStepRecord {
  readonly seq: number;
  readonly step: RunStep;
  readonly outcome: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly evidence: StepEvidence;
  readonly error: string | null;
}

export interface RevocationRecord {
  readonly id: string;
  readonly which: 'old' | 'new';
  readonly vendorId: string | null;
  readonly version: number | null;
  readonly status: 'waiting' | 'done' | 'cancelled';
  readonly notBefore: string;
  readonly nextAt: string;
  readonly attempts: number;
  readonly lastError: string | null;
  readonly doneAt: string | null;
}

export interface RunDetail extends RunRecord {
  readonly timeline: RunStepRecord[];
  readonly revocations: RevocationRecord[];
}

/** What a revocation row names: never a value. */
export interface RevocationCredential {
  readonly vendorId?: string | undefined;
  readonly version?: number | undefined;
}

export function parseState(text: string): RunState {
  return JSON.parse(text) as RunState;
}

export function specOf(row: Pick<RotationRunsTable, 'spec'>): RotationPolicy {
  return JSON.parse(row.spec) as RotationPolicy;
}

export function toRunRecord(row: RotationRunsTable): RunRecord {
  const state = parseState(row.state);
  return {
    id: row.id,
    policy: row.policy,
    policyVersion: row.policy_version === null ? null : Number(row.policy_version),
    target: { kind: row.target_kind, id: row.target },
    connector: specOf(row).connector.type,
    trigger: row.trigger as RunTrigger,
    reason: row.reason,
    scheduledFor: row.scheduled_for,
    status: row.status as RunStatus,
    step: row.step as RunStep,
    attempts: Number(row.attempts),
    nextAt: row.status === 'running' ? row.next_at : null,
    error: row.error,
    oldCredential: { vendorId: state.oldVendorId ?? null, version: state.oldVersion ?? null },
    newCredential: { vendorId: state.newVendorId ?? null, version: state.newVersion ?? null },
    deliveredTo: state.deliverTo ?? null,
    overlapEndsAt: state.overlapEndsAt ?? null,
    oldKept: state.kept === true,
    createdAt: row.created_at,
    createdBy: row.created_by,
    updatedAt: row.updated_at,
    promotedAt: row.promoted_at,
    finishedAt: row.finished_at,
  };
}

export function toStepRecord(row: RotationRunStepsTable): RunStepRecord {
  return {
    seq: Number(row.seq),
    step: row.step as RunStep,
    outcome: row.outcome,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    evidence: JSON.parse(row.evidence) as StepEvidence,
    error: row.error,
  };
}

export function toRevocationRecord(row: RotationRevocationsTable): RevocationRecord {
  const credential = JSON.parse(row.credential) as RevocationCredential;
  return {
    id: row.id,
    which: row.which as 'old' | 'new',
    vendorId: credential.vendorId ?? null,
    version: credential.version ?? null,
    status: row.status as RevocationRecord['status'],
    notBefore: row.not_before,
    nextAt: row.next_at,
    attempts: Number(row.attempts),
    lastError: row.last_error,
    doneAt: row.done_at,
  };
}
