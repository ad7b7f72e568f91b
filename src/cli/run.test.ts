import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCli } from './run.js';
import type { Command, CommandContext, CommandResult } from './command.js';

function collect() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return { stream, text: () => text };
}

async function invoke(args: string[], command: Partial<Command> & { run(ctx: CommandContext): Promise<CommandResult> }) {
  const out = collect();
  const err = collect();
  let seen: CommandContext | undefined;
  const full: Command = {
    name: 'demo',
    summary: 'demo',
    usage: '',
    options: { flag: { type: 'string' } },
    positionals: { min: 0, max: 10 },
    ...command,
    run: async (ctx) => {
      seen = ctx;
      return command.run(ctx);
    },
  };
  const code = await runCli(args, { env: {}, stdout: out.stream, stderr: err.stream, stdin: Readable.from([]), commands: [full] });
  return { code, stdout: out.text(), stderr: err.text(), ctx: seen };
}

describe('runCli and "--"', () => {
  it('hands what follows -- to a passThrough command untouched, --json and --help included', async () => {
    const result = await invoke(['demo', '--flag', 'x', '--', 'node', '--json', '-h', '--flag'], {
      passThrough: true,
      run: async () => ({ data: null, output: 'none' }),
    });
    expect(result.code).toBe(0);
    expect(result.ctx?.rest).toEqual(['node', '--json', '-h', '--flag']);
    expect(result.ctx?.options.flag).toBe('x');
    expect(result.ctx?.json).toBe(false);
    expect(result.stdout).toBe('');
  });

  it('passes on any exit status a command returns', async () => {
    const result = await invoke(['demo', '--', 'x'], { passThrough: true, run: async () => ({ data: null, exitCode: 137, output: 'none' }) });
    expect(result.code).toBe(137);
  });

  it('writes raw output exactly, without adding a newline, and JSON under --json', async () => {
    const raw = await invoke(['demo'], { run: async () => ({ data: { value: 'v' }, text: 'no newline', output: 'raw' }) });
    expect(raw.stdout).toBe('no newline');
    const json = await invoke(['demo', '--json'], { run: async () => ({ data: { value: 'v' }, text: 'no newline', output: 'raw' }) });
    expect(JSON.parse(json.stdout)).toEqual({ value: 'v' });
  });

  it('still treats -- as the end of options for other commands', async () => {
    const result = await invoke(['demo', '--', '--flag'], { run: async () => ({ data: null }) });
    expect(result.code).toBe(0);
    expect(result.ctx?.positionals).toEqual(['--flag']);
    expect(result.ctx?.rest).toEqual([]);
  });
});
