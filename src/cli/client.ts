/** Where the CLI finds its server and token: flags, then KEYSMITH_ADDR/KEYSMITH_TOKEN, then the local data directory. */
import { resolve } from 'node:path';
import { readRootToken } from '../app/data-dir.js';
import { DEFAULT_DATA_DIR } from '../app/defaults.js';
import { KeysmithClient, DEFAULT_ADDR } from '../sdk/index.js';
import { optionString, type CommandContext } from './command.js';

/** Options every API command takes. The token comes from the environment, never a flag (shell history). */
export const clientOptions = {
  addr: { type: 'string' },
} as const;

export function clientFrom(ctx: CommandContext): KeysmithClient {
  const addr = optionString(ctx, 'addr') || ctx.env.KEYSMITH_ADDR || DEFAULT_ADDR;
  const token =
    (ctx.env.KEYSMITH_TOKEN || undefined) ??
    readRootToken(resolve(optionString(ctx, 'data') || ctx.env.KEYSMITH_DATA || DEFAULT_DATA_DIR));
  return new KeysmithClient({ addr: /^https?:\/\//.test(addr) ? addr : `http://${addr}`, ...(token ? { token } : {}), userAgent: 'keysmith-cli' });
}
