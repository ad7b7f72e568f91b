/**
 * Prometheus metrics. Process metrics come from prom-client on a registry of the server's own;
 * the per-request metrics (verifications by outcome, verify latency, HTTP requests) are plain
 * counters rendered in the text format at scrape time, because they run on every request and
 * prom-client's label handling costs more than the work it measures.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Registry, collectDefaultMetrics } from 'prom-client';

const VERIFY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25];

/** A counter per label set, each label set resolved once. */
export class LabelledCounter {
  readonly #name: string;
  readonly #help: string;
  readonly #values = new Map<string, { labels: string; value: number }>();

  constructor(name: string, help: string) {
    this.#name = name;
    this.#help = help;
  }

  /** The slot for one label set; keep it and call `inc()` on it. */
  child(labels: Record<string, string | number>): { inc(): void } {
    const text = Object.entries(labels)
      .map(([name, value]) => `${name}="${String(value).replace(/["\\\n]/g, '_')}"`)
      .join(',');
    let slot = this.#values.get(text);
    if (!slot) {
      slot = { labels: text, value: 0 };
      this.#values.set(text, slot);
    }
    const entry = slot;
    return {
      inc() {
        entry.value += 1;
      },
    };
  }

  render(): string {
    const lines = [`# HELP ${this.#name} ${this.#help}`, `# TYPE ${this.#name} counter`];
    for (const slot of this.#values.values()) lines.push(slot.labels === '' ? `${this.#name} ${slot.value}` : `${this.#name}{${slot.labels}} ${slot.value}`);
    return lines.join('\n');
  }
}

/** A histogram without labels. */
export class SimpleHistogram {
  readonly #name: string;
  readonly #help: string;
  readonly #bounds: readonly number[];
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(name: string, help: string, bounds: readonly number[]) {
    this.#name = name;
    this.#help = help;
    this.#bounds = bounds;
    this.#counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    this.#sum += value;
    this.#count += 1;
    const bounds = this.#bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.#counts[i]! += 1;
        return;
      }
    }
  }

  render(): string {
    const lines = [`# HELP ${this.#name} ${this.#help}`, `# TYPE ${this.#name} histogram`];
    let cumulative = 0;
    this.#bounds.forEach((bound, i) => {
      cumulative += this.#counts[i]!;
      lines.push(`${this.#name}_bucket{le="${bound}"} ${cumulative}`);
    });
    lines.push(`${this.#name}_bucket{le="+Inf"} ${this.#count}`, `${this.#name}_sum ${this.#sum}`, `${this.#name}_count ${this.#count}`);
    return lines.join('\n');
  }
}

export interface ServerMetrics {
  readonly registry: Registry;
  readonly verifications: LabelledCounter;
  readonly verifyDuration: SimpleHistogram;
  readonly httpRequests: LabelledCounter;
  /** Failed authentications by reason, every one (the audit log aggregates them). */
  readonly authFailures: LabelledCounter;
  /** Calls refused for a missing scope (403), every one (the audit log aggregates them); no labels. */
  readonly authDenials: { inc(): void };
  /** Adds figures read at scrape time (from the database, say); their text is appended. */
  addCollector(collect: () => Promise<string>): void;
  render(): Promise<string>;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): ServerMetrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'keysmith_' });
  const verifications = new LabelledCounter('keysmith_verifications_total', 'Key verifications by outcome code');
  const verifyDuration = new SimpleHistogram(
    'keysmith_verify_duration_seconds',
    'Time spent verifying a key, from parsed body to outcome',
    VERIFY_BUCKETS,
  );
  const httpRequests = new LabelledCounter('keysmith_http_requests_total', 'HTTP requests by method, route pattern and status');
  const authFailures = new LabelledCounter('keysmith_auth_failures_total', 'Failed authentications by reason (throttled: refused while the address was throttled)');
  // No scope or principal label: the series stay fixed however many tokens are refused.
  const authDenialsCounter = new LabelledCounter('keysmith_auth_denials_total', 'Authenticated calls refused for a missing scope (403)');
  const authDenials = authDenialsCounter.child({});
  const collectors: Array<() => Promise<string>> = [];
  return {
    registry,
    verifications,
    verifyDuration,
    httpRequests,
    authFailures,
    authDenials,
    addCollector(collect) {
      collectors.push(collect);
    },
    async render() {
      const process = await registry.metrics();
      // A collector that fails (the database away) leaves its figures out rather than the whole page.
      const extra = await Promise.all(collectors.map((collect) => collect().catch(() => '')));
      return `${[verifications.render(), verifyDuration.render(), httpRequests.render(), authFailures.render(), authDenialsCounter.render(), ...extra.filter((text) => text !== '')].join('\n')}\n${process}`;
    },
  };
}

/** The request counter for one method, route pattern and status; keep it and call `inc()`. */
export function httpRequestCounter(metrics: ServerMetrics, method: string, route: string, status: number): { inc(): void } {
  return metrics.httpRequests.child({ method, route, status });
}

/**
 * Counts HTTP requests by method, route pattern and status without an onResponse hook (which
 * costs each request an event listener): route handlers are wrapped to count what they answer,
 * and problem responses (auth failures, bad input, unknown routes) are counted where they are
 * sent. Returns the counting function for the problem handler.
 */
export function registerMetrics(app: FastifyInstance, metrics: ServerMetrics): (request: FastifyRequest, status: number) => void {
  // method → route pattern → status → counter: interned strings and small ints, no string built per request.
  const children = new Map<string, Map<string, Map<number, { inc(): void }>>>();
  const count = (request: FastifyRequest, status: number): void => {
    // Route patterns, never raw URLs: a URL could carry an id or worse.
    const route = request.routeOptions.url ?? 'unmatched';
    let byRoute = children.get(request.method);
    if (!byRoute) {
      byRoute = new Map();
      children.set(request.method, byRoute);
    }
    let byStatus = byRoute.get(route);
    if (!byStatus) {
      byStatus = new Map();
      byRoute.set(route, byStatus);
    }
    let child = byStatus.get(status);
    if (!child) {
      child = httpRequestCounter(metrics, request.method, route, status);
      byStatus.set(status, child);
    }
    child.inc();
  };
  app.addHook('onRoute', (route) => {
    const handler = route.handler as (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => unknown;
    route.handler = function countedHandler(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      const result = handler.call(this, request, reply);
      if (result instanceof Promise) {
        return result.then((value: unknown) => {
          count(request, reply.statusCode);
          return value;
        });
      }
      count(request, reply.statusCode);
      return result;
    };
  });
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.render();
  });
  return count;
}

/** A gauge family in the text format, one line per label set. */
export function renderGauge(name: string, help: string, samples: ReadonlyArray<{ labels?: Record<string, string>; value: number | null }>): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`];
  for (const sample of samples) {
    if (sample.value === null) continue;
    const labels = Object.entries(sample.labels ?? {}).map(([label, value]) => `${label}="${value.replace(/["\\\n]/g, '_')}"`).join(',');
    lines.push(`${name}${labels ? `{${labels}}` : ''} ${sample.value}`);
  }
  return lines.join('\n');
}
