/**
 * Throwaway SoftHSM2 tokens for the PKCS#11 tests: each lives in its own temporary token
 * directory. SoftHSM2 reads SOFTHSM2_CONF when the module is initialised (C_Initialize), so a
 * token must be created before a provider opens the module, and every provider in the process
 * must be closed (C_Finalize) before a token made later becomes visible. Without softhsm2 the
 * suites skip locally; in CI (CI=true or KEYSMITH_REQUIRE_SOFTHSM=1) they fail instead.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'vitest';

const MODULE_CANDIDATES = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'];

export interface SoftHsmToken {
  readonly module: string;
  readonly tokenLabel: string;
  readonly pin: string;
  readonly soPin: string;
  /** The softhsm2.conf this token was made under (also put in process.env.SOFTHSM2_CONF). */
  readonly conf: string;
  cleanup(): void;
}

export interface SoftHsmTokenOptions {
  readonly tokenLabel?: string;
  readonly pin?: string;
}

/** The SoftHSM2 module on this machine, or undefined when softhsm2 is not installed. */
export function findSoftHsmModule(): string | undefined {
  const candidates = [process.env.SOFTHSM2_MODULE, ...MODULE_CANDIDATES].filter((p): p is string => !!p);
  const module = candidates.find((path) => existsSync(path));
  return module !== undefined && hasSoftHsmUtil() ? module : undefined;
}

function hasSoftHsmUtil(): boolean {
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function softHsmRequired(): boolean {
  return process.env.CI === 'true' || process.env.KEYSMITH_REQUIRE_SOFTHSM === '1';
}

/**
 * Runs the suite when SoftHSM2 is installed; skips it locally when it is not, and fails the
 * file with a message saying how to install it in CI.
 */
export function describeWithSoftHsm(name: string, suite: () => void): void {
  if (findSoftHsmModule() !== undefined) {
    describe(name, suite);
  } else if (softHsmRequired()) {
    describe(name, () => {
      throw new Error(
        'SoftHSM2 is not installed (softhsm2-util or libsofthsm2.so missing), and the PKCS#11 tests may not skip in CI: ' +
          'apt-get install -y softhsm2 (.ci/run does this)',
      );
    });
  } else {
    describe.skip(`${name} (softhsm2 not installed: apt-get install -y softhsm2)`, suite);
  }
}

/** Creates an initialised token in a fresh directory and points SOFTHSM2_CONF at it. */
export function createSoftHsmToken(options: SoftHsmTokenOptions = {}): SoftHsmToken {
  const module = findSoftHsmModule();
  if (module === undefined) throw new Error('SoftHSM2 is not installed: apt-get install -y softhsm2');
  const dir = mkdtempSync(join(tmpdir(), 'keysmith-softhsm-'));
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens, { mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`, { mode: 0o600 });
  process.env.SOFTHSM2_CONF = conf;

  const tokenLabel = options.tokenLabel ?? `ks-test-${randomBytes(4).toString('hex')}`;
  const pin = options.pin ?? randomBytes(6).toString('hex');
  const soPin = randomBytes(6).toString('hex');
  try {
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--pin', pin, '--so-pin', soPin], {
      env: { ...process.env, SOFTHSM2_CONF: conf },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`softhsm2-util --init-token failed${stderr ? `: ${stderr}` : ''}`);
  }
  return {
    module,
    tokenLabel,
    pin,
    soPin,
    conf,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
