import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditCheckpointer, createCommandSink, createFileSink, createUrlSink, readCheckpointFile, type CheckpointSink } from '../../src/audit/index.js';
import { createTestContext, type TestContext } from '../support/context.js';
import { describeEachDialect } from '../support/databases.js';

const dir = mkdtempSync(join(tmpdir(), 'keysmith-sinks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;
const fresh = (name: string) => join(dir, `${++counter}-${name}`);

describe('checkpoint sinks', () => {
  it('file: appends one line per checkpoint, creates it 0600 and makes an existing file private', async () => {
    const path = join(fresh('sub'), 'checkpoints.jsonl');
    const sink = createFileSink(path);
    await sink.write('{"a":1}');
    await sink.write('{"a":2}');
    expect(readFileSync(path, 'utf8')).toBe('{"a":1}\n{"a":2}\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const loose = fresh('loose.jsonl');
    writeFileSync(loose, '');
    chmodSync(loose, 0o644);
    await createFileSink(loose).write('{}');
    expect(statSync(loose).mode & 0o777).toBe(0o600);
  });

  it('command: runs a real program with the line on stdin; a non-zero exit or a missing program is a failure', async () => {
    const script = fresh('ship.sh');
    writeFileSync(script, '#!/bin/sh\n# Keeps what it is given, as a shipper to another host would.\ncat >> "$1"\nexit "${2:-0}"\n', { mode: 0o755 });
    const out = fresh('shipped.jsonl');
    await createCommandSink([script, out]).write('{"seq":1}');
    await createCommandSink([script, out]).write('{"seq":2}');
    expect(readFileSync(out, 'utf8')).toBe('{"seq":1}\n{"seq":2}\n');
    await expect(createCommandSink([script, out, '3']).write('{"seq":3}')).rejects.toThrow(/exited with status 3/);
    await expect(createCommandSink([fresh('missing')]).write('{}')).rejects.toThrow(/could not start/);
    const slow = fresh('slow.sh');
    writeFileSync(slow, '#!/bin/sh\nsleep 30\n', { mode: 0o755 });
    await expect(createCommandSink([slow], { timeoutMs: 200 }).write('{}')).rejects.toThrow(/stopped \(SIGKILL\)/);
  });

  describe('url', () => {
    let server: Server;
    let url: string;
    const received: Array<{ type: string | undefined; body: string }> = [];
    let status = 204;
    beforeAll(async () => {
      server = createServer((req, res) => {
        let body = '';
        req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        req.on('end', () => {
          received.push({ type: req.headers['content-type'], body });
          res.statusCode = status;
          res.end();
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/checkpoints?token=x`;
    });
    afterAll(async () => new Promise<void>((resolve) => server.close(() => resolve())));

    it('POSTs the line as JSON; a non-2xx answer is a failure', async () => {
      const sink = createUrlSink(url);
      expect(sink.name).not.toContain('token');
      await sink.write('{"seq":7}');
      expect(received).toEqual([{ type: 'application/json', body: '{"seq":7}' }]);
      status = 500;
      await expect(sink.write('{"seq":8}')).rejects.toThrow(/answered 500/);
    });
  });
});

describeEachDialect('audit checkpointer', (dialect) => {
  let ctx: TestContext;
  beforeEach(async () => {
    ctx = await createTestContext(dialect);
  });
  afterEach(async () => ctx.close());

  const newKey = async () => expect((await ctx.request({ method: 'POST', url: '/v1/keys', body: { owner: 'checkpointer' } })).statusCode).toBe(201);

  it('writes when the head moved, nothing when it did not, and once more at stop; the file verifies', async () => {
    const file = fresh(`${dialect}.jsonl`);
    const failures: string[] = [];
    const broken: CheckpointSink = { name: 'broken', write: async () => Promise.reject(new Error('down')) };
    const checkpointer = new AuditCheckpointer({ db: ctx.store.db, audit: ctx.audit, clock: ctx.clock, sinks: [broken, createFileSink(file)], onError: (sink, e) => failures.push(`${sink}: ${e.message}`) });
    const first = await checkpointer.checkpoint();
    expect(first?.sinks).toEqual([file]);
    expect(failures).toEqual(['broken: down']);
    expect((await checkpointer.checkpoint())?.sinks).toEqual([]);
    await newKey();
    await checkpointer.checkpoint();
    await checkpointer.stop();
    await newKey();
    await checkpointer.stop();
    const entries = readCheckpointFile(file);
    const head = Number((await ctx.store.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);
    expect(entries.map((e) => e.checkpoint!.seq)).toEqual([first!.checkpoint.seq, first!.checkpoint.seq + 1, head]);
    expect(await ctx.audit.verify(ctx.store.db, { checkpoints: entries })).toMatchObject({ ok: true, checkpoints: 3 });
  });

  it('checks the head on its timer while the server runs', async () => {
    const file = fresh(`${dialect}-timer.jsonl`);
    const checkpointer = new AuditCheckpointer({ db: ctx.store.db, audit: ctx.audit, clock: ctx.clock, sinks: [createFileSink(file)], intervalMs: 20 });
    checkpointer.start();
    try {
      const waitFor = async (check: () => boolean) => {
        for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
        return check();
      };
      expect(await waitFor(() => readCheckpointFile(file).length === 1)).toBe(true);
      await newKey();
      expect(await waitFor(() => readCheckpointFile(file).length === 2)).toBe(true);
    } finally {
      await checkpointer.stop();
    }
  });
});
