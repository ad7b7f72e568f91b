/**
 * A key-encryption key (KEK) provider wraps and unwraps data keys. Versions are numbered from 1;
 * which versions exist and which one new writes use is recorded in the database by the vault,
 * so a provider only has to make a version usable and answer wrap/unwrap for it.
 */

export interface KekProvider {
  /** Recorded in every envelope (`local`, `pkcs11:<token label>`), so an envelope names its KEK. */
  readonly id: string;
  /** Makes a version usable (the PKCS#11 provider generates its key in the token). Idempotent. */
  ensureVersion(version: number): Promise<void>;
  /**
   * Wraps a data key under a KEK version. `aad` binds the wrapped key to the value it protects,
   * so a wrapped key copied onto another row fails to unwrap.
   */
  wrapKey(dataKey: Uint8Array, version: number, aad: Uint8Array): Promise<Buffer>;
  /** Unwraps a data key; throws `ERR_DECRYPTION_FAILED` (and says nothing more) on any failure. */
  unwrapKey(wrapped: Uint8Array, version: number, aad: Uint8Array): Promise<Buffer>;
  close(): Promise<void>;
}
