/**
 * What the offline audit commands share: the store and the audit keys of a data directory or a
 * PostgreSQL URL, opened without creating anything (opening SQLite creates the file, so its
 * existence is checked first), and loaded only when asked, so API commands stay light.
 */
import { existsSync } from 'node:fs';
import { UsageError, optionString, type CommandContext } from '../command.js';
import type { AuditLog } from '../../audit/index.js';
import type { AppConfig } from '../../app/config.js';
import type { Store } from '../../store/index.js';

export interface OfflineAudit {
  readonly config: AppConfig;
  readonly audit: AuditLog;
  readonly store: Store;
}

/** Whether the command runs offline (`--data` or `--database`) rather than through the API. */
export function isOffline(ctx: CommandContext): boolean {
  return optionString(ctx, 'data') !== undefined || optionString(ctx, 'database') !== undefined;
}

export async function offlineConfig(ctx: CommandContext): Promise<AppConfig> {
  const { resolveConfig } = await import('../../app/config.js');
  return resolveConfig({ data: optionString(ctx, 'data'), database: optionString(ctx, 'database') }, ctx.env);
}

export async function offlineAuditLog(ctx: CommandContext, config: AppConfig): Promise<AuditLog> {
  const [{ createAuditLog, deriveAuditKeys }, { loadMasterKey }] = await Promise.all([import('../../audit/index.js'), import('../../app/data-dir.js')]);
  return createAuditLog(deriveAuditKeys(loadMasterKey(config.dataDir, ctx.env)));
}

export async function openOfflineAudit(ctx: CommandContext): Promise<OfflineAudit> {
  const config = await offlineConfig(ctx);
  const [{ openStore }, { sqlitePath }] = await Promise.all([import('../../app/services.js'), import('../../app/data-dir.js')]);
  if (config.databaseUrl === undefined && !existsSync(sqlitePath(config.dataDir))) {
    throw new UsageError(`${config.dataDir} holds no Keysmith database (${sqlitePath(config.dataDir)} does not exist); give the data directory of a server, or --database postgres://…`);
  }
  const audit = await offlineAuditLog(ctx, config);
  return { config, audit, store: openStore(config) };
}
