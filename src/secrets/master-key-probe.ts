/**
 * Tries a master key on the vault before a server records the key's check value on a database
 * an older Keysmith made (which has no check value yet): the newest sealed value is opened and,
 * where a digest was kept, its digest compared. Only a key that really opens the data is recorded.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { openEnvelope, type KekProvider } from '../crypto/index.js';
import type { Database } from '../store/index.js';
import { envelopeOf } from './kek-service.js';
import { valueAad, valueDigest } from './secret-codec.js';

/** `opens`: the key is the vault's; `fails`: it is not; `nothing`: the vault cannot tell. */
export type VaultProbeResult = 'opens' | 'fails' | 'nothing';

export interface VaultProbeDeps {
  readonly db: Kysely<Database>;
  readonly kek: KekProvider;
  /** The digest key derived from the master key being tried. */
  readonly digestKey: Uint8Array;
  /**
   * Whether the provider's KEKs come from that master key (the local provider): then opening a
   * value is proof on its own. A PKCS#11 token opens values whatever the master key, so only a
   * kept digest can tell.
   */
  readonly kekFromMasterKey: boolean;
}

export async function probeVault(deps: VaultProbeDeps): Promise<VaultProbeResult> {
  let query = deps.db
    .selectFrom('secret_versions')
    .select(['secret_id', 'version', 'value_type', 'envelope_format', 'alg', 'kek_id', 'kek_version', 'wrapped_key', 'sealed', 'value_digest'])
    .where('sealed', 'is not', null)
    .where('wrapped_key', 'is not', null)
    .where('kek_id', '=', deps.kek.id);
  if (!deps.kekFromMasterKey) query = query.where('value_digest', 'is not', null);
  const row = await query.orderBy('created_at', 'desc').orderBy('secret_id').orderBy('version', 'desc').limit(1).executeTakeFirst();
  if (row === undefined) return 'nothing';
  let bytes: Buffer;
  try {
    bytes = await openEnvelope(deps.kek, envelopeOf(row), valueAad(row.secret_id, row.version, row.value_type));
  } catch {
    // A token that cannot open the value says nothing about the master key.
    return deps.kekFromMasterKey ? 'fails' : 'nothing';
  }
  try {
    if (row.value_digest === null) return 'opens';
    const stored = Buffer.from(row.value_digest, 'base64url');
    const computed = Buffer.from(valueDigest(deps.digestKey, row.value_type, bytes), 'base64url');
    return stored.length === computed.length && timingSafeEqual(stored, computed) ? 'opens' : 'fails';
  } finally {
    bytes.fill(0);
  }
}
