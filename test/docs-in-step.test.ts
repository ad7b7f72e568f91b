import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_REGISTRY } from '../src/shared/errors.js';

describe('docs/errors.md', () => {
  it('lists every registry code with its status and category, and nothing else', () => {
    const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| `(ERR_[A-Z_]+)` \| (\d{3}) \| `([a-z_]+)` \|/gm)].map((m) => [m[1], Number(m[2]), m[3]]);
    const registry = Object.entries(ERROR_REGISTRY).map(([code, spec]) => [code, spec.status, spec.category]);
    expect(rows).toEqual(registry);
  });
});

/**
 * Imports point down only (STYLE.md): a folder imports another folder only through its
 * index.ts, and lower layers never import higher ones.
 */
const LAYERS: Record<string, number> = {
  shared: 0,
  contract: 1,
  crypto: 1,
  store: 1,
  policy: 1,
  outbound: 1,
  audit: 2,
  keys: 3,
  secrets: 3,
  rotation: 3,
  server: 4,
  sdk: 2,
  app: 5,
  cli: 6,
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') && !path.endsWith('.test.ts') ? [path] : [];
  });
}

describe('module boundaries', () => {
  const src = resolve(dirname(new URL(import.meta.url).pathname), '../src');
  const files = sourceFiles(src);

  it('has a layer for every folder under src', () => {
    const folders = new Set(files.map((file) => relative(src, file).split('/')[0]!).filter((f) => !f.endsWith('.ts')));
    for (const folder of folders) expect(LAYERS, folder).toHaveProperty(folder);
  });

  it('never imports upward, and crosses folders only through index.ts (store/migrations aside)', () => {
    const violations: string[] = [];
    for (const file of files) {
      const from = relative(src, file).split('/')[0]!;
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(/from '(\.[^']+)'/g)) {
        const target = relative(src, resolve(dirname(file), match[1]!));
        const to = target.split('/')[0]!;
        if (to === from || to.startsWith('..')) continue;
        if (LAYERS[to]! > LAYERS[from]! ) violations.push(`${relative(src, file)} imports higher layer ${target}`);
        const allowedDeep = to === 'shared' || (from === 'cli' && to === 'app') || (from === 'app' && to === 'server');
        if (!target.endsWith('/index.js') && !allowedDeep) violations.push(`${relative(src, file)} reaches into ${target}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
