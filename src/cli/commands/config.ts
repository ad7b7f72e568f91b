/**
 * `keysmith config check`: reads the configuration the server would start with (flags,
 * environment, configuration file), checks it, and prints it without secrets: the PKCS#11 PIN
 * and the database password are masked, and the master key is never part of it. A bad file
 * exits 2 with every problem as FILE:LINE:COL.
 */
import { optionString, type Command } from '../command.js';
import { table } from '../render.js';
import { configFrom } from './server.js';

export interface EffectiveSetting {
  readonly key: string;
  readonly env: string;
  readonly value: string | null;
  readonly source: 'flag' | 'env' | 'file' | 'default';
}

/** A postgres URL without its password, in the userinfo or as a query parameter (`?password=`, `sslpassword=`). */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    const query = [...parsed.searchParams.keys()].some((name) => /pass/i.test(name))
      ? `?${[...parsed.searchParams].map(([name, value]) => `${encodeURIComponent(name)}=${/pass/i.test(name) ? '***' : encodeURIComponent(value)}`).join('&')}`
      : parsed.search;
    parsed.search = '';
    return `${parsed.toString()}${query}`;
  } catch {
    return '[set, not a URL]';
  }
}

export const configCheckCommand: Command = {
  name: 'config check',
  summary: 'Check the server configuration (file, environment, flags) and print it without secrets',
  usage: '[--config FILE] [--data DIR]',
  options: { config: { type: 'string' }, data: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const config = await configFrom(ctx);
    const { SETTINGS } = await import('../../app/config-settings.js');
    const { createEgress } = await import('../../outbound/index.js');
    createEgress({ allow: config.egress.allow });
    const settings: EffectiveSetting[] = SETTINGS.map((spec) => {
      const raw = spec.key === 'data' ? config.dataDir : config.settings[spec.env];
      const source = config.sources[spec.env] ?? 'default';
      let value = raw ?? spec.default ?? null;
      if (spec.secret && raw !== undefined) value = spec.env === 'KEYSMITH_DATABASE_URL' ? withoutPassword(raw) : '[set]';
      return { key: spec.key, env: spec.env, value, source };
    });
    const data = {
      file: config.configFile ?? null,
      dataDir: config.dataDir,
      settings,
      programs: config.programs.map((program) => ({ name: program.name, path: program.path, sha256: program.sha256, args: program.args, allowArgs: program.allowArgs ?? [] })),
      egress: { allow: config.egress.allow },
    };
    const text = [
      `Configuration file: ${data.file ?? `none (no ${optionString(ctx, 'config') ?? 'keysmith.yaml'} in ${config.dataDir})`}`,
      '',
      table(settings.map((s) => ({ ...s, value: s.value ?? '-' })), ['key', 'value', 'source', 'env']),
      '',
      data.programs.length > 0 ? table(data.programs.map((p) => ({ ...p, args: p.args.join(' '), allowArgs: p.allowArgs.join(' ') })), ['name', 'path', 'sha256', 'args', 'allowArgs']) : 'Programs: none registered (command connectors and command deploy hooks are refused)',
      '',
      data.egress.allow.length > 0 ? `Egress allowed: ${data.egress.allow.join(', ')}` : 'Egress: nothing allowed (http connectors, health checks and URL deploy hooks are refused)',
    ].join('\n');
    return { data, text };
  },
};
