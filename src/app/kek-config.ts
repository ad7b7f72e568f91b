/**
 * Which key-encryption key provider the server uses, from the environment: the local master key
 * by default, or a PKCS#11 token (an HSM) for real deployments. Kept apart from config.ts so
 * the PIN is read in one place; the file is read through an injected reader so tests do no I/O.
 */
import { readFileSync } from 'node:fs';
import { createLocalKekProvider, createPkcs11KekProvider, type KekProvider } from '../crypto/index.js';
import type { RandomBytes } from '../shared/ids.js';
import { ConfigError } from './defaults.js';

export const DEFAULT_PKCS11_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
/** PKCS#11 token labels are at most 32 bytes. */
const MAX_TOKEN_LABEL_BYTES = 32;

export type KekConfig =
  | { readonly provider: 'local' }
  | { readonly provider: 'pkcs11'; readonly module: string; readonly tokenLabel: string; readonly pin: string };

export type ReadTextFile = (path: string) => string;

const readTextFile: ReadTextFile = (path) => readFileSync(path, 'utf8');

/**
 * KEYSMITH_KEK_PROVIDER (`local`, the default, or `pkcs11`); for pkcs11 also
 * KEYSMITH_PKCS11_MODULE, KEYSMITH_PKCS11_TOKEN and one of KEYSMITH_PKCS11_PIN or
 * KEYSMITH_PKCS11_PIN_FILE. Throws a ConfigError naming the variable that is wrong.
 */
export function resolveKekConfig(env: NodeJS.ProcessEnv, readFile: ReadTextFile = readTextFile): KekConfig {
  const provider = setting(env, 'KEYSMITH_KEK_PROVIDER') ?? 'local';
  if (provider === 'local') return { provider: 'local' };
  if (provider !== 'pkcs11') {
    throw new ConfigError(`KEYSMITH_KEK_PROVIDER must be "local" or "pkcs11", not "${provider}"`);
  }
  const module = setting(env, 'KEYSMITH_PKCS11_MODULE') ?? DEFAULT_PKCS11_MODULE;
  const tokenLabel = setting(env, 'KEYSMITH_PKCS11_TOKEN');
  if (tokenLabel === undefined) {
    throw new ConfigError('KEYSMITH_PKCS11_TOKEN must name the PKCS#11 token (its label) when KEYSMITH_KEK_PROVIDER=pkcs11');
  }
  if (Buffer.byteLength(tokenLabel) > MAX_TOKEN_LABEL_BYTES) {
    throw new ConfigError(`KEYSMITH_PKCS11_TOKEN is longer than a PKCS#11 token label can be (${MAX_TOKEN_LABEL_BYTES} bytes)`);
  }
  return { provider: 'pkcs11', module, tokenLabel, pin: resolvePin(env, readFile) };
}

function resolvePin(env: NodeJS.ProcessEnv, readFile: ReadTextFile): string {
  const pin = env.KEYSMITH_PKCS11_PIN;
  const pinFile = setting(env, 'KEYSMITH_PKCS11_PIN_FILE');
  if (pin !== undefined && pin !== '' && pinFile !== undefined) {
    throw new ConfigError('set only one of KEYSMITH_PKCS11_PIN and KEYSMITH_PKCS11_PIN_FILE');
  }
  if (pinFile !== undefined) {
    let text: string;
    try {
      text = readFile(pinFile);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new ConfigError(`KEYSMITH_PKCS11_PIN_FILE ${pinFile} cannot be read (${reason})`);
    }
    // Files usually end with a newline that is not part of the PIN.
    const fromFile = text.replace(/\r?\n$/, '');
    if (fromFile === '') throw new ConfigError(`KEYSMITH_PKCS11_PIN_FILE ${pinFile} is empty`);
    return fromFile;
  }
  if (pin === undefined || pin === '') {
    throw new ConfigError('KEYSMITH_PKCS11_PIN or KEYSMITH_PKCS11_PIN_FILE must give the token user PIN when KEYSMITH_KEK_PROVIDER=pkcs11');
  }
  return pin;
}

/** An unset or blank variable counts as unset. */
function setting(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

/** Opens the configured provider; a PKCS#11 token that cannot be reached throws ERR_KEK_UNAVAILABLE. */
export function openKekProvider(config: KekConfig, masterKey: Uint8Array, random: RandomBytes): KekProvider {
  if (config.provider === 'local') return createLocalKekProvider(masterKey, random);
  return createPkcs11KekProvider({ module: config.module, tokenLabel: config.tokenLabel, pin: config.pin, random });
}
