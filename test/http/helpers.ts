/**
 * Shared helpers for the HTTP suites: one test context per suite and dialect, problem+json
 * assertions, key issuing and verifying shortcuts, and row counts for "nothing half-written".
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import type { AuditEventWire, IssuedKeyWire, KeyRecordWire, VerifyResultWire } from '../../src/contract/index.js';
import { formatKey, parseKey } from '../../src/keys/index.js';
import { newKeyIdBody } from '../../src/shared/ids.js';
import type { DialectName as Dialect } from '../../src/store/index.js';
import { createTestContext, type TestContext, type TestContextOptions } from '../support/context.js';

export const MINUTE = 60_000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;

/** Creates one context before the enclosing suite and closes it after; returns a getter. */
export function useContext(dialect: Dialect, options: TestContextOptions = {}): () => TestContext {
  let ctx: TestContext | undefined;
  beforeAll(async () => {
    ctx = await createTestContext(dialect, options);
  });
  afterAll(async () => {
    await ctx?.close();
  });
  return () => {
    if (!ctx) throw new Error('test context is not ready');
    return ctx;
  };
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  error: string;
  instance?: string;
  requestId?: string;
  errors?: Array<{ field?: string; message: string }>;
}

/** Asserts an RFC 9457 problem response and returns its body. */
export function expectProblem(res: LightMyRequestResponse, status: number, error?: string, code?: string): ProblemBody {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = res.json() as ProblemBody;
  expect(body).toMatchObject({
    type: expect.any(String),
    title: expect.any(String),
    status,
    detail: expect.any(String),
    code: expect.any(String),
    error: expect.stringMatching(/^ERR_[A-Z_]+$/),
  });
  expect(body.requestId).toBe(res.headers['x-request-id']);
  expect(res.body).not.toMatch(/\bat .+\.(ts|js):\d+/); // no stack trace
  if (error !== undefined) expect(body.error).toBe(error);
  if (code !== undefined) expect(body.code).toBe(code);
  return body;
}

/** Fields a problem body names, from `errors[]`. */
export function problemFields(body: ProblemBody): string[] {
  return (body.errors ?? []).map((entry) => entry.field ?? '');
}

let counter = 0;
/** A name no other test in the run uses (so suites sharing a context stay apart). */
export function unique(prefix = 'team'): string {
  counter += 1;
  return `${prefix}-${counter}-${randomBytes(3).toString('hex')}`;
}

export async function createKey(ctx: TestContext, body: Record<string, unknown> = {}, token?: string): Promise<IssuedKeyWire> {
  const res = await ctx.request({ method: 'POST', url: '/v1/keys', body: { owner: 'team-test', ...body }, ...(token ? { token } : {}) });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as IssuedKeyWire;
}

export async function verifyKey(
  ctx: TestContext,
  key: string,
  extra: { scopes?: string[]; ip?: string; userAgent?: string } = {},
  options: { token?: string; headers?: Record<string, string> } = {},
): Promise<VerifyResultWire> {
  const res = await ctx.request({ method: 'POST', url: '/v1/keys/verify', body: { key, ...extra }, ...options });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as VerifyResultWire;
}

export async function getKey(ctx: TestContext, id: string): Promise<KeyRecordWire> {
  const res = await ctx.request({ method: 'GET', url: `/v1/keys/${id}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as KeyRecordWire;
}

/** POSTs a state change (`revoke`, `disable`, …) to a service key with a JSON body and expects 200. */
export async function changeKey(ctx: TestContext, id: string, action: string, body: Record<string, unknown> = {}): Promise<KeyRecordWire> {
  const res = await ctx.request({ method: 'POST', url: `/v1/keys/${id}/${action}`, body });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as KeyRecordWire;
}

/** Reads a management token record through `GET /v1/tokens/:id` and expects 200. */
export async function getToken(ctx: TestContext, id: string): Promise<KeyRecordWire> {
  const res = await ctx.request({ method: 'GET', url: `/v1/tokens/${id}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as KeyRecordWire;
}

/** Revokes a management token through `POST /v1/tokens/:id/revoke` (root token unless given) and expects 200. */
export async function revokeToken(ctx: TestContext, id: string, body: Record<string, unknown> = {}, token?: string): Promise<KeyRecordWire> {
  const res = await ctx.request({ method: 'POST', url: `/v1/tokens/${id}/revoke`, body, ...(token ? { token } : {}) });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as KeyRecordWire;
}

/** The key id a management token or key string carries. */
export function idOf(key: string): string {
  const parsed = parseKey(key);
  if (!parsed) throw new Error('not a key');
  return parsed.keyId;
}

/** A well-formed key (valid checksum) for an id this server never issued. */
export function unknownKey(prefix = 'ks', env: 'live' | 'test' = 'live'): string {
  return formatKey(prefix, env, newKeyIdBody(randomBytes), randomBytes);
}

/** A well-formed key naming an existing id but carrying another secret. */
export function wrongSecretFor(key: string): string {
  const parsed = parseKey(key);
  if (!parsed) throw new Error('not a key');
  return formatKey(parsed.prefix, parsed.env, parsed.keyId.slice(4), randomBytes);
}

/** A well-formed id no key has. */
export function unknownKeyId(): string {
  return `key_${newKeyIdBody(randomBytes)}`;
}

/** Highest audit sequence number in the store. */
export async function auditHead(ctx: TestContext): Promise<number> {
  const row = await ctx.store.db
    .selectFrom('audit_events')
    .select((eb) => eb.fn.max('seq').as('seq'))
    .executeTakeFirst();
  return Number(row?.seq ?? 0);
}

/** Audit events after a sequence number, read through the API with the root token. */
export async function auditAfter(ctx: TestContext, after: number): Promise<AuditEventWire[]> {
  const events: AuditEventWire[] = [];
  let cursor: number | null = after;
  while (cursor !== null) {
    const res = await ctx.request({ method: 'GET', url: `/v1/audit?after=${cursor}&limit=1000` });
    expect(res.statusCode, res.body).toBe(200);
    const page = res.json() as { data: AuditEventWire[]; nextCursor: number | null };
    events.push(...page.data);
    cursor = page.nextCursor;
  }
  return events;
}

export interface RowCounts {
  keys: number;
  labels: number;
  audit: number;
}

export async function countRows(ctx: TestContext): Promise<RowCounts> {
  const count = async (table: 'api_keys' | 'key_labels' | 'audit_events') => {
    const row = await ctx.store.db
      .selectFrom(table)
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  };
  return { keys: await count('api_keys'), labels: await count('key_labels'), audit: await count('audit_events') };
}

/** Runs `fn` and asserts that no key, label or audit row was written meanwhile. */
export async function expectNothingWritten<T>(ctx: TestContext, fn: () => Promise<T>): Promise<T> {
  const before = await countRows(ctx);
  const result = await fn();
  expect(await countRows(ctx)).toEqual(before);
  return result;
}

/** Every property name anywhere in a JSON value. */
export function allPropertyNames(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const item of value) allPropertyNames(item, out);
  else if (value !== null && typeof value === 'object') {
    for (const [name, inner] of Object.entries(value)) {
      out.push(name);
      allPropertyNames(inner, out);
    }
  }
  return out;
}

/** Deterministic PRNG (mulberry32), so a fuzz failure can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
