/**
 * `keysmith serve`: refuses a master key others can read, a data directory or database others
 * can use, and a missing or different master key for a database that has one; initialises a new
 * data directory on first start (root token shown once), migrates, listens, and on stop drains
 * requests and flushes pending usage before closing the store.
 */
import type { FastifyInstance } from 'fastify';
import { keyCheckFingerprint, secureRandom } from '../crypto/index.js';
import { buildServer, createMetrics, REDACT_PATHS } from '../server/index.js';
import { systemClock } from '../shared/clock.js';
import type { AppConfig } from './config.js';
import { rootTokenPath } from './data-dir.js';
import { ensureRootToken, type InitResult } from './init.js';
import { prepareStart } from './master-key-guard.js';
import { openServices, type Services } from './services.js';
import { AuditCheckpointer, createCommandSink, createFileSink, createUrlSink, type CheckpointSink } from '../audit/index.js';

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly services: Services;
  readonly url: string;
  /** Set when this start created the data directory. */
  readonly init?: InitResult;
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly logger?: boolean;
  readonly version?: string;
}

export async function startServer(config: AppConfig, options: StartOptions = {}): Promise<RunningServer> {
  const prepared = await prepareStart(config, { mode: 'serve', clock: systemClock, random: secureRandom });
  const created = prepared.created;
  const services = await openServices(config, prepared.masterKey ? { masterKey: prepared.masterKey } : {});
  let ready = true;
  let app: FastifyInstance | undefined;
  let init: InitResult | undefined;
  let checkpointer: AuditCheckpointer | undefined;
  try {
    if (created) {
      const token = await ensureRootToken(services, config, true);
      init = {
        dataDir: config.dataDir,
        created,
        rootTokenFile: rootTokenPath(config.dataDir),
        migrations: prepared.migrations,
        masterKey: prepared.keyCheck ? keyCheckFingerprint(prepared.keyCheck.check_value) : '',
        ...token,
      };
    }
    const settings = config.auditCheckpoints;
    const sinks: CheckpointSink[] = [];
    if (settings.file) sinks.push(createFileSink(settings.file));
    if (settings.command) sinks.push(createCommandSink(settings.command));
    if (settings.url) sinks.push(createUrlSink(settings.url));
    checkpointer = new AuditCheckpointer({
      db: services.store.db,
      audit: services.audit,
      clock: services.clock,
      sinks,
      intervalMs: settings.intervalMs,
      // A checkpoint not kept is a gap in the evidence, not a reason to stop serving: say so loudly.
      onError: (sink, error) => app?.log.error({ sink, err: error.message }, 'audit checkpoint not written'),
    });
    app = await buildServer({
      keys: services.keys,
      incidents: services.incidents,
      secrets: services.secrets,
      kek: services.kek,
      rotationPolicies: services.rotationPolicies,
      rotation: services.rotation,
      store: services.store,
      audit: services.audit,
      auditCheckpoints: { file: settings.file, checkpointer },
      clock: services.clock,
      random: services.random,
      metrics: createMetrics(),
      trustProxy: config.trustProxy,
      fastVerify: config.fastVerify,
      events: config.events,
      timeouts: config.timeouts,
      authFailures: config.authFailures,
      isReady: () => ready,
      ...(options.version ? { version: options.version } : {}),
      logger:
        options.logger === false
          ? false
          : { level: config.logLevel, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    });
    await services.keys.start();
    await services.secrets.start();
    services.kek.start();
    services.incidents.start();
    await app.listen({ host: config.host, port: config.port });
    services.rotation.start();
    checkpointer.start();
  } catch (error) {
    await services.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  let stopping: Promise<void> | undefined;
  return {
    app,
    services,
    url: `http://${host}:${port}`,
    ...(init ? { init } : {}),
    stop() {
      stopping ??= (async () => {
        ready = false;
        await app.close();
        // After the last request: the final head is signed and kept before the store closes.
        await checkpointer?.stop();
        await services.close();
      })();
      return stopping;
    },
  };
}
