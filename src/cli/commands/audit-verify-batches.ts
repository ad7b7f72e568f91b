/**
 * Checkpoints sent to `POST /v1/audit/verify` in bodies of at most MAX_REQUEST_CHECKPOINTS (the
 * server refuses more, to bound the signatures one call checks): an evidence file longer than
 * that is sent in turn, one call after the other (the server runs one verification at a time),
 * stopping at the first problem, whose line is then counted from the start of the file.
 */
import { MAX_REQUEST_CHECKPOINTS, type ChainVerificationWire, type CheckpointWire, type VerifyAuditBodyWire } from '../../contract/index.js';

export async function verifyInBatches(
  verify: (body: VerifyAuditBodyWire) => Promise<ChainVerificationWire>,
  checkpoints: readonly CheckpointWire[] | undefined,
  batch = MAX_REQUEST_CHECKPOINTS,
): Promise<ChainVerificationWire> {
  if (checkpoints === undefined) return verify({});
  let last: ChainVerificationWire | undefined;
  let sent = 0;
  for (let offset = 0; offset < checkpoints.length || last === undefined; offset += batch) {
    const part = checkpoints.slice(offset, offset + batch);
    const result = await verify({ checkpoints: [...part] });
    const place = result.problem?.checkpoint;
    if (!result.ok) {
      // The server numbers the checkpoints of one body from 1.
      const problem = place?.source === 'request' ? { ...result.problem!, checkpoint: { ...place, line: place.line + offset } } : result.problem;
      return { ...result, ...(problem ? { problem } : {}) };
    }
    last = result;
    sent = part.length;
  }
  // The last answer counts the server's own checkpoints and the last batch; add the others.
  return { ...last, checkpoints: last.checkpoints - sent + checkpoints.length };
}
