/** Defaults and the config error, apart from config.ts so the CLI can load them without the domain. */
export const DEFAULT_PORT = 7370;
export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_DATA_DIR = '.keysmith';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
