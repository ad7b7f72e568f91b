/**
 * docs/configuration.md and the configuration file stay in step with the code: every setting
 * the file knows has its row, and every KEYSMITH_* variable the server reads is a setting of the
 * file (or one of the few kept out of it on purpose).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../src/app/config-settings.js';

const ROOT = resolve(import.meta.dirname, '..');
/** Read by the server but not in the file, each for a reason docs/configuration.md gives. */
const NOT_IN_FILE = new Set(['KEYSMITH_MASTER_KEY', 'KEYSMITH_CONFIG', 'KEYSMITH_ADDR', 'KEYSMITH_TOKEN']);
/** Given to programs a rotation runs, not read by the server. */
const GIVEN_TO_PROGRAMS = new Set(['KEYSMITH_STEP', 'KEYSMITH_RUN_ID']);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith('.ts') && !path.endsWith('.test.ts') ? [path] : [];
  });
}

describe('docs/configuration.md', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');

  it('has a row for every setting, with its variable and default', () => {
    for (const spec of SETTINGS) {
      const row = doc.split('\n').find((line) => line.startsWith(`| \`${spec.key}\` |`));
      expect(row, spec.key).toBeDefined();
      expect(row).toContain(`\`${spec.env}\``);
      if (spec.default !== undefined) expect(row).toContain(`\`${spec.default}\``);
    }
    for (const name of NOT_IN_FILE) expect(doc, name).toContain(`\`${name}\``);
  });

  it('every KEYSMITH_* variable the server reads is a setting of the file', () => {
    const known = new Set(SETTINGS.map((spec) => spec.env));
    const read = new Set<string>();
    for (const file of sources(join(ROOT, 'src'))) {
      for (const match of readFileSync(file, 'utf8').matchAll(/KEYSMITH_[A-Z0-9_]*[A-Z0-9]\b/g)) read.add(match[0]);
    }
    const missing = [...read].filter((name) => !known.has(name) && !NOT_IN_FILE.has(name) && !GIVEN_TO_PROGRAMS.has(name));
    expect(missing).toEqual([]);
  });
});
