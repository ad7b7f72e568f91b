import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError, type CommandContext, type OptionValues } from '../command.js';
import { readSecretValue, secretPathProblem } from './secrets.js';

const dir = mkdtempSync(join(tmpdir(), 'keysmith-secrets-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function context(options: OptionValues, stdin: string | Buffer | 'tty'): CommandContext {
  const input = stdin === 'tty' ? Object.assign(Readable.from([]), { isTTY: true }) : Readable.from([Buffer.from(stdin)]);
  return {
    env: {},
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: input,
    options,
    positionals: [],
    json: false,
    rest: [],
    stopSignal: new Promise(() => undefined),
  };
}

describe('secretPathProblem', () => {
  it('accepts lowercase segments joined by /', () => {
    for (const path of ['a', 'payments/stripe/api-key', 'x_y.z/1-2']) expect(secretPathProblem(path)).toBeUndefined();
  });

  it('names what is wrong with a bad path', () => {
    expect(secretPathProblem('Payments/x')).toMatch(/not a secret path/);
    expect(secretPathProblem('a//b')).toMatch(/not a secret path/);
    expect(secretPathProblem('/a')).toMatch(/not a secret path/);
    expect(secretPathProblem('a/../b')).toMatch(/"\." and "\.\."/);
    expect(secretPathProblem('a/promote')).toMatch(/names an operation/);
    expect(secretPathProblem('a'.repeat(257))).toMatch(/at most 256/);
  });
});

describe('readSecretValue', () => {
  it('reads stdin and drops exactly one final newline', async () => {
    expect(await readSecretValue(context({}, 'hunter22\n'))).toBe('hunter22');
    expect(await readSecretValue(context({}, 'hunter22\n\n'))).toBe('hunter22\n');
    expect(await readSecretValue(context({}, 'hunter22\r\n'))).toBe('hunter22');
    expect(await readSecretValue(context({}, 'no newline'))).toBe('no newline');
    expect(await readSecretValue(context({}, '  spaces kept  \n'))).toBe('  spaces kept  ');
  });

  it('reads --value-file instead of stdin', async () => {
    const file = join(dir, 'value.txt');
    writeFileSync(file, 'line1\nline2\n');
    expect(await readSecretValue(context({ 'value-file': file }, 'ignored'))).toBe('line1\nline2');
  });

  it('refuses a terminal on stdin, saying how to pipe the value', async () => {
    await expect(readSecretValue(context({}, 'tty'))).rejects.toThrow(UsageError);
    await expect(readSecretValue(context({}, 'tty'))).rejects.toThrow(/pipe the value/);
  });

  it('refuses an empty value, a missing file, bytes that are not UTF-8, and an oversized input', async () => {
    await expect(readSecretValue(context({}, ''))).rejects.toThrow(/empty/);
    await expect(readSecretValue(context({}, '\n'))).rejects.toThrow(/empty/);
    await expect(readSecretValue(context({ 'value-file': join(dir, 'missing') }, ''))).rejects.toThrow(/ENOENT/);
    await expect(readSecretValue(context({}, Buffer.from([0xff, 0xfe, 0x00])))).rejects.toThrow(/not UTF-8/);
    await expect(readSecretValue(context({}, 'x'.repeat(300 * 1024)))).rejects.toThrow(/64 KiB/);
  });

  it('parses --json-value as a JSON object and refuses anything else', async () => {
    expect(await readSecretValue(context({ 'json-value': true }, '{"user":"u","port":5432}\n'))).toEqual({ user: 'u', port: 5432 });
    for (const input of ['[1,2]', '"text"', 'null', '42', '{not json']) {
      await expect(readSecretValue(context({ 'json-value': true }, input)), input).rejects.toThrow(UsageError);
    }
  });

  it('does not repeat invalid JSON input in its message', async () => {
    await expect(readSecretValue(context({ 'json-value': true }, '{"password": hunter22}'))).rejects.toThrow(/^--json-value: the value is not valid JSON$/);
  });
});
