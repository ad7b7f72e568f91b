/** Commands that run on the server's machine: init, serve, migrate. */
// The app modules (Fastify, Kysely, drivers) load lazily: client commands should start fast.
import type { AppConfig } from '../../app/config.js';
import { optionFlag, optionString, type Command, type CommandContext } from '../command.js';
import { fields } from '../render.js';

const storeOptions = {
  data: { type: 'string' },
  database: { type: 'string' },
  config: { type: 'string' },
} as const;

export async function configFrom(ctx: CommandContext): Promise<AppConfig> {
  const { resolveConfig } = await import('../../app/config.js');
  return resolveConfig(
    {
      data: optionString(ctx, 'data'),
      database: optionString(ctx, 'database'),
      addr: optionString(ctx, 'addr'),
      defaultTtl: optionString(ctx, 'default-ttl'),
      maxTtl: optionString(ctx, 'max-ttl'),
      cacheTtl: optionString(ctx, 'cache-ttl'),
      logLevel: optionString(ctx, 'log-level'),
      config: optionString(ctx, 'config'),
    },
    ctx.env,
  );
}

const ROOT_TOKEN_WARNING = 'This root token is shown once here; it is also kept (mode 0600) in';

export const initCommand: Command = {
  name: 'init',
  summary: 'Create the data directory, master key, database and a root token',
  usage: '[--config FILE] [--data DIR] [--database postgres://…] [--new-root-token]',
  options: { ...storeOptions, 'new-root-token': { type: 'boolean' }, 'max-ttl': { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const { initialise } = await import('../../app/init.js');
    const result = await initialise(await configFrom(ctx), { newRootToken: optionFlag(ctx, 'new-root-token') });
    const lines = [result.created ? `Initialised ${result.dataDir}` : `${result.dataDir} was already initialised`];
    if (result.masterKey) lines.push(`Master key: ${result.masterKey} (the database's check value; every server on it needs this key)`);
    if (result.migrations.length > 0) lines.push(`Applied migrations: ${result.migrations.join(', ')}`);
    if (result.rootToken) {
      lines.push('', `Root token: ${result.rootToken}`, `${ROOT_TOKEN_WARNING} ${result.rootTokenFile}`);
    }
    return { data: result, text: lines.join('\n') };
  },
};

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'Apply database migrations',
  usage: '[--config FILE] [--data DIR] [--database postgres://…]',
  options: storeOptions,
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const [{ prepareStart }, { secureRandom }, { systemClock }] = await Promise.all([
      import('../../app/master-key-guard.js'),
      import('../../crypto/index.js'),
      import('../../shared/clock.js'),
    ]);
    const config = await configFrom(ctx);
    // The master key is checked first: a database that has data is migrated only with its key.
    const { migrations: applied, database } = await prepareStart(config, { mode: 'migrate', clock: systemClock, random: secureRandom, env: ctx.env });
    return {
      data: { database, applied },
      text: applied.length > 0 ? `Applied ${applied.join(', ')} to ${database}` : `${database} is up to date`,
    };
  },
};

export const serveCommand: Command = {
  name: 'serve',
  summary: 'Run the Keysmith server (SQLite in the data directory unless --database is given)',
  usage: '[--config FILE] [--addr 127.0.0.1:7370] [--data DIR] [--database postgres://…] [--max-ttl 90d] [--default-ttl 30d]',
  options: {
    ...storeOptions,
    addr: { type: 'string' },
    'max-ttl': { type: 'string' },
    'default-ttl': { type: 'string' },
    'cache-ttl': { type: 'string' },
    'log-level': { type: 'string' },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const config = await configFrom(ctx);
    const { startServer } = await import('../../app/serve.js');
    const server = await startServer(config, { logger: config.logLevel !== 'silent' });
    const say = (text: string) => (ctx.json ? undefined : ctx.stderr.write(`${text}\n`));
    if (server.init?.rootToken) {
      say(fields([
        ['data directory', server.init.dataDir],
        ['root token', server.init.rootToken],
      ]));
      say(`${ROOT_TOKEN_WARNING} ${server.init.rootTokenFile}`);
    }
    if (config.configFile !== undefined) say(`Configuration from ${config.configFile}`);
    say(`Keysmith listening on ${server.url} (${server.services.store.description})`);
    if (ctx.json) {
      ctx.stdout.write(`${JSON.stringify({ event: 'listening', url: server.url, database: server.services.store.description, ...(server.init?.rootToken ? { rootToken: server.init.rootToken } : {}) })}\n`);
    }
    const signal = await ctx.stopSignal;
    say(`Received ${signal}; draining and flushing usage…`);
    await server.stop();
    return { data: { event: 'stopped', signal }, text: 'Stopped' };
  },
};
