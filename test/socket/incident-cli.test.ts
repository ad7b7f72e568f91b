/**
 * `keysmith incident revoke` on a terminal: the plan is shown, the question asked on stderr, and
 * only "yes" goes on. Driven through runCli with terminal-like streams against a listening
 * in-process server (e2e tests cannot give the CLI a terminal).
 */
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/run.js';
import { createTestContext, type TestContext } from '../support/context.js';

let ctx: TestContext;
let addr: string;

beforeAll(async () => {
  ctx = await createTestContext('sqlite');
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  const address = ctx.app.server.address();
  if (address === null || typeof address === 'string') throw new Error('not listening on a port');
  addr = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  await ctx.close();
});

function sink(tty: boolean): PassThrough & { isTTY?: boolean; text(): string } {
  const stream = new PassThrough() as PassThrough & { isTTY?: boolean; text(): string };
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  stream.isTTY = tty;
  stream.text = () => text;
  return stream;
}

async function run(args: string[], answer: string | null) {
  const stdin = Object.assign(Readable.from(answer === null ? [] : [Buffer.from(answer)]), { isTTY: true });
  const stdout = sink(true);
  const stderr = sink(true);
  const code = await runCli(args, { env: { KEYSMITH_ADDR: addr, KEYSMITH_TOKEN: ctx.rootToken }, stdin, stdout, stderr });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

async function issue(owner: string): Promise<string> {
  return (await ctx.keys.issue({ actor: 'test' }, { owner })).key;
}

describe('incident revoke on a terminal', () => {
  it('shows the plan, asks, and revokes on "yes", drawing progress on stderr', async () => {
    const key = await issue('tty-yes');
    const result = await run(['incident', 'revoke', '--select', 'owner=tty-yes', '--reason', 'drill'], 'yes\n');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Plan: revoke 1 key matching owner=tty-yes$/m);
    expect(result.stderr).toContain('Revoke 1 key? Type "yes" to go on: ');
    expect(result.stderr).toMatch(/Revoking 1 keys on the server… \d+\.\ds/);
    expect(result.stderr).toMatch(/Revoked \[#+\] 1\/1 100%/);
    expect(result.stdout).toMatch(/revoked 1 of 1 planned key\./);
    expect((await ctx.keys.verify({ key })).code).toBe('REVOKED');
  });

  it.each([['no\n'], ['y\n'], [null]])('refuses with exit 1 and changes nothing on %j', async (answer) => {
    const owner = `tty-no-${String(answer).replace(/\W/g, '')}`;
    const key = await issue(owner);
    const result = await run(['incident', 'revoke', '--select', `owner=${owner}`, '--reason', 'drill'], answer);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/not confirmed; nothing was changed/);
    expect((await ctx.keys.verify({ key })).code).toBe('VALID');
    expect((await ctx.incidents.list({ limit: 100 })).data.map((i) => i.select)).not.toContain(`owner=${owner}`);
  });

  it('needs no question with --yes, and nothing to confirm when nothing matches', async () => {
    const key = await issue('tty-yes-flag');
    const result = await run(['incident', 'revoke', '--select', 'owner=tty-yes-flag', '--reason', 'drill', '--yes'], null);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).not.toContain('Type "yes"');
    expect((await ctx.keys.verify({ key })).code).toBe('REVOKED');
    const none = await run(['incident', 'revoke', '--select', 'owner=nobody-here', '--reason', 'drill'], null);
    expect(none.code).toBe(0);
    expect(none.stdout).toMatch(/no active service key matches owner=nobody-here/);
  });
});
