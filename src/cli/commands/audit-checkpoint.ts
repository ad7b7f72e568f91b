/** `keysmith audit key` and `keysmith audit checkpoint`: the checkpoint verification key, and a signed checkpoint on demand. */
import { resolve } from 'node:path';
import { RefusedError, optionString, type Command } from '../command.js';
import { clientFrom } from '../client.js';
import type { CheckpointKeyWire, WrittenCheckpointWire } from '../../contract/index.js';
import { isOffline, offlineAuditLog, offlineConfig, openOfflineAudit } from './audit-offline.js';

export const auditKeyCommand: Command = {
  name: 'audit key',
  summary: 'Print the Ed25519 public key that verifies audit checkpoints, with its fingerprint',
  usage: '[--data DIR]  (offline, from the master key; through the API otherwise)',
  options: { data: { type: 'string' }, database: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    let key: CheckpointKeyWire;
    if (isOffline(ctx)) {
      const audit = await offlineAuditLog(ctx, await offlineConfig(ctx));
      const { publicKey } = audit;
      key = { keyId: publicKey.keyId, algorithm: 'Ed25519', publicKey: publicKey.base64, pem: publicKey.pem, fingerprint: publicKey.fingerprint };
    } else {
      key = await clientFrom(ctx).auditCheckpointKey();
    }
    const text = [`Audit checkpoint key ${key.keyId} (${key.algorithm})`, `public key  ${key.publicKey}`, `fingerprint ${key.fingerprint}`, key.pem.trimEnd()].join('\n');
    return { data: key, text };
  },
};

export const auditCheckpointCommand: Command = {
  name: 'audit checkpoint',
  summary: 'Sign the audit head now; append it to FILE (and, through the API, to the server’s own sinks)',
  usage: "[--out FILE] [--data DIR | --database postgres://…]  (offline: appends to --out or the data directory's checkpoints file)",
  options: { out: { type: 'string' }, data: { type: 'string' }, database: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const out = optionString(ctx, 'out');
    const { createFileSink, formatCheckpoint } = await import('../../audit/index.js');
    let written: WrittenCheckpointWire;
    if (isOffline(ctx)) {
      const { config, audit, store } = await openOfflineAudit(ctx);
      try {
        const checkpoint = await audit.checkpoint(store.db, new Date().toISOString()).catch((error: unknown) => {
          throw new RefusedError(error instanceof Error ? error.message : String(error), 'checkpoint_refused');
        });
        if (!checkpoint) throw new RefusedError('the audit log is empty: there is no head to checkpoint', 'checkpoint_refused');
        const file = out === undefined ? config.auditCheckpoints.file : undefined;
        if (file) await createFileSink(file).write(formatCheckpoint(checkpoint));
        written = { checkpoint, line: formatCheckpoint(checkpoint), sinks: file ? [file] : [] };
      } finally {
        await store.close();
      }
    } else {
      written = await clientFrom(ctx).auditCheckpoint();
    }
    if (out !== undefined) {
      const path = resolve(out);
      await createFileSink(path).write(written.line);
      written = { ...written, sinks: [...written.sinks, path] };
    }
    const where = written.sinks.length > 0 ? `written to ${written.sinks.join(', ')}` : 'written nowhere new (the server had written this head already, or its sinks failed: see its log)';
    return { data: written, text: `Checkpoint of event #${written.checkpoint.seq} signed by ${written.checkpoint.keyId}, ${where}\n${written.line}` };
  },
};
