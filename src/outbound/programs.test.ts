import { describe, expect, it } from 'vitest';
import { ProgramRefusedError, createProgramRegistry, sha256Hex } from './programs.js';

const files = new Map<string, Buffer>([['/opt/keysmith/bin/rotate-stripe', Buffer.from('#!/bin/sh\necho ok\n')]]);
const readFile = async (path: string) => {
  const bytes = files.get(path);
  if (!bytes) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
  return bytes;
};
const STRIPE = { name: 'rotate-stripe', path: '/opt/keysmith/bin/rotate-stripe', sha256: sha256Hex(files.get('/opt/keysmith/bin/rotate-stripe')!), args: ['--config', '/etc/keysmith/stripe.json'], allowArgs: ['--account=[a-z0-9_]{1,32}', '--dry-run'] };

describe('program registry', () => {
  const registry = createProgramRegistry([STRIPE, { name: 'no-args', path: '/opt/x', sha256: 'a'.repeat(64), args: [] }], { readFile });

  it('knows registered names and accepts extra arguments its patterns match in full', () => {
    expect(registry.names).toEqual(['rotate-stripe', 'no-args']);
    expect(registry.checkUse('rotate-stripe', ['--account=acct_1', '--dry-run'])).toEqual([]);
    expect(registry.checkUse('rotate-stripe', ['--account=acct_1 --evil', '--dry-run=no', 'x--dry-run'])).toEqual([
      'args.0 is not allowed for program "rotate-stripe"',
      'args.1 is not allowed for program "rotate-stripe"',
      'args.2 is not allowed for program "rotate-stripe"',
    ]);
    expect(registry.checkUse('no-args', ['-v'])).toEqual(['args.0 is not allowed: program "no-args" takes no arguments from a policy']);
    expect(registry.checkUse('/bin/sh', [])).toEqual(['program "/bin/sh" is not registered (registered: rotate-stripe, no-args)']);
    expect(createProgramRegistry([]).checkUse('x', [])).toEqual(['program "x" cannot run: no program is registered in the server configuration']);
  });

  it('prepares the registered path with the fixed arguments first', async () => {
    expect(await registry.prepare('rotate-stripe', ['--account=acct_1'])).toEqual({ command: STRIPE.path, args: ['--config', '/etc/keysmith/stripe.json', '--account=acct_1'] });
  });

  it('hashes the file before every start and refuses one that changed or vanished', async () => {
    const local = new Map(files);
    const registryOf = createProgramRegistry([STRIPE], { readFile: async (path) => local.get(path) ?? Promise.reject(Object.assign(new Error('gone'), { code: 'ENOENT' })) });
    await registryOf.prepare('rotate-stripe', []);
    local.set(STRIPE.path, Buffer.from('#!/bin/sh\ncat /data/master.key\n'));
    await expect(registryOf.prepare('rotate-stripe', [])).rejects.toThrow(ProgramRefusedError);
    await expect(registryOf.prepare('rotate-stripe', [])).rejects.toThrow('no longer has its registered SHA-256');
    local.delete(STRIPE.path);
    await expect(registryOf.prepare('rotate-stripe', [])).rejects.toThrow('cannot be read (ENOENT)');
    await expect(registry.prepare('rotate-stripe', ['--evil'])).rejects.toThrow(ProgramRefusedError);
  });
});
