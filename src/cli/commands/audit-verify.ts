/** `keysmith audit verify`: through the API, or offline against the data directory or database. */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError, optionString, type Command } from '../command.js';
import { clientFrom } from '../client.js';
import { progress } from '../progress.js';
import type { ChainVerificationWire } from '../../contract/index.js';
import { isOffline, openOfflineAudit } from './audit-offline.js';
import { verifyInBatches } from './audit-verify-batches.js';

export const auditVerifyCommand: Command = {
  name: 'audit verify',
  summary: 'Check the keyed audit chain and its signed checkpoints; name the first bad event or checkpoint',
  usage: "[--data DIR | --database postgres://…]  (offline; through the API otherwise) [--checkpoints FILE]  (default: the server's checkpoints file)",
  options: { data: { type: 'string' }, database: { type: 'string' }, checkpoints: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const checkpointsFile = optionString(ctx, 'checkpoints');
    if (checkpointsFile !== undefined && !existsSync(checkpointsFile)) throw new UsageError(`--checkpoints ${checkpointsFile} does not exist`);
    if (checkpointsFile !== undefined && !statSync(checkpointsFile).isFile()) throw new UsageError(`--checkpoints ${checkpointsFile} is not a file`);
    const { readCheckpointFile } = await import('../../audit/checkpoints.js');
    const given = checkpointsFile !== undefined ? readCheckpointFile(resolve(checkpointsFile)) : undefined;
    let result: ChainVerificationWire;
    let source: string;
    if (isOffline(ctx)) {
      const { config, audit, store } = await openOfflineAudit(ctx);
      source = store.description;
      try {
        const checkpoints = given ?? (config.auditCheckpoints.file ? readCheckpointFile(config.auditCheckpoints.file) : []);
        result = await audit.verify(store.db, { checkpoints, onProgress: ctx.json ? undefined : progress(ctx.stderr, 'Checking events') });
      } finally {
        await store.close();
      }
    } else {
      const client = clientFrom(ctx);
      source = client.addr;
      const bad = given?.find((entry) => entry.checkpoint === undefined);
      if (bad) {
        // A line that is not a checkpoint fails here: the server would only see the good ones.
        result = {
          ok: false,
          events: 0,
          headSeq: 0,
          checkpoints: given!.length,
          problem: { seq: 0, kind: 'bad-checkpoint', message: `checkpoint ${bad.source}:${bad.line} is not a checkpoint line`, checkpoint: { source: bad.source, line: bad.line } },
        };
      } else {
        result = await verifyInBatches((body) => client.verifyAudit(body), given?.map((entry) => entry.checkpoint!));
      }
    }
    const text = result.ok
      ? `Audit chain intact: ${result.events} events, head #${result.headSeq}, keyed from #${result.keyedFrom}, ${result.checkpoints} checkpoint(s) matched (${source})`
      : `Audit chain BROKEN${result.problem?.kind === 'bad-checkpoint' ? '' : ` at event #${result.problem?.seq}`} (${result.problem?.kind}): ${result.problem?.message} (${source})`;
    return { data: { ...result, source }, text, exitCode: result.ok ? 0 : 1 };
  },
};
