/** `keysmith audit verify`: through the API, or offline against the data directory or database. */
import { optionString, type Command } from '../command.js';
import { clientFrom } from '../client.js';
import { progress } from '../progress.js';

export const auditVerifyCommand: Command = {
  name: 'audit verify',
  summary: 'Check the audit hash chain and name the first event that was edited, deleted or reordered',
  usage: '[--data DIR | --database postgres://…]  (offline; through the API otherwise)',
  options: { data: { type: 'string' }, database: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const data = optionString(ctx, 'data');
    const database = optionString(ctx, 'database');
    let result;
    let source: string;
    if (data !== undefined || database !== undefined) {
      // Offline: load the store only now, so API commands stay light.
      const [{ createAuditLog }, { resolveConfig }, { openStore }, { loadMasterKey }, { deriveSecret }] = await Promise.all([
        import('../../audit/index.js'),
        import('../../app/config.js'),
        import('../../app/services.js'),
        import('../../app/data-dir.js'),
        import('../../crypto/index.js'),
      ]);
      const config = resolveConfig({ data, database }, ctx.env);
      const audit = createAuditLog({ chainKey: deriveSecret(loadMasterKey(config.dataDir, ctx.env), 'audit-chain:v1') });
      const store = openStore(config);
      source = store.description;
      try {
        result = await audit.verify(store.db, { onProgress: ctx.json ? undefined : progress(ctx.stderr, 'Checking events') });
      } finally {
        await store.close();
      }
    } else {
      const client = clientFrom(ctx);
      source = client.addr;
      result = await client.verifyAudit();
    }
    const text = result.ok
      ? `Audit chain intact: ${result.events} events, head #${result.headSeq} (${source})`
      : `Audit chain BROKEN at event #${result.problem?.seq}: ${result.problem?.message} (${source})`;
    return { data: { ...result, source }, text, exitCode: result.ok ? 0 : 1 };
  },
};
