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

/**
 * The server will not start on what it found (a master key missing or not the database's, a
 * data directory others can read): exit 1 with a message saying what to do.
 */
export class StartRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartRefusedError';
  }
}
