/**
 * The `pkcs11:<token>` KEK provider: KEK version n is a non-extractable AES-256 key labelled
 * `keysmith-kek-v<n>` inside a PKCS#11 token (an HSM, or SoftHSM2 in tests). Data keys are
 * wrapped with AES-GCM by the token itself, so the KEK never reaches this process.
 *
 * pkcs11js is synchronous; the provider keeps the Promise interface so an asynchronous
 * provider (a cloud KMS) can stand in its place. A Cryptoki library is initialised once per
 * process, so providers that share a module share one initialisation, counted by reference.
 */
import pkcs11js from 'pkcs11js';
import { AppError } from '../shared/errors.js';
import type { RandomBytes } from '../shared/ids.js';
import { decryptionFailed } from './aead.js';
import type { KekProvider } from './kek-provider.js';

export interface Pkcs11KekOptions {
  /** Path of the PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`). */
  readonly module: string;
  readonly tokenLabel: string;
  readonly pin: string;
  readonly random: RandomBytes;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEK_BYTES = 32;

export function kekObjectLabel(version: number): string {
  return `keysmith-kek-v${version}`;
}

type Handle = Buffer;

export function createPkcs11KekProvider(options: Pkcs11KekOptions): KekProvider {
  const library = acquireLibrary(options.module);
  let session: Handle;
  try {
    const slot = findSlot(library.pkcs11, options.tokenLabel);
    session = library.pkcs11.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
  } catch (error) {
    releaseLibrary(options.module);
    throw asUnavailable(error, `cannot open a session on PKCS#11 token "${options.tokenLabel}"`);
  }
  const pkcs11 = library.pkcs11;
  try {
    pkcs11.C_Login(session, pkcs11js.CKU_USER, options.pin);
  } catch (error) {
    if (pkcs11CodeOf(error) !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) {
      closeQuietly(() => pkcs11.C_CloseSession(session));
      releaseLibrary(options.module);
      throw asUnavailable(error, `cannot log in to PKCS#11 token "${options.tokenLabel}"`);
    }
  }

  let open = true;
  /** Key handles per version; only hits are cached, as another node may create a version later. */
  const handles = new Map<number, Handle[]>();

  const assertOpen = (): void => {
    if (!open) throw new AppError('ERR_KEK_UNAVAILABLE', `the PKCS#11 KEK provider for "${options.tokenLabel}" is closed`);
  };

  const keysOf = (version: number): Handle[] => {
    const cached = handles.get(version);
    if (cached !== undefined) return cached;
    const found = findObjects(pkcs11, session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_LABEL, value: kekObjectLabel(version) },
    ]);
    if (found.length > 0) handles.set(version, found);
    return found;
  };

  /** Two nodes racing through ensureVersion could each create the version; never guess which. */
  const wrappingKeyOf = (version: number): Handle => {
    const keys = keysOf(version);
    if (keys.length === 1) return keys[0]!;
    throw new AppError(
      'ERR_KEK_UNAVAILABLE',
      keys.length === 0
        ? `KEK version ${version} does not exist in PKCS#11 token "${options.tokenLabel}"`
        : `PKCS#11 token "${options.tokenLabel}" holds ${keys.length} keys labelled ${kekObjectLabel(version)}; remove all but the one in use`,
    );
  };

  const gcm = (iv: Buffer, aad: Uint8Array): pkcs11js.Mechanism => {
    // CK_GCM_PARAMS as the v2.40 errata (and SoftHSM2) define it, with ulIvBits filled in; the
    // older CK_PARAMS_AES_GCM leaves ulIvBits unset, which some modules reject.
    const parameter: pkcs11js.GcmParams = {
      type: pkcs11js.CK_PARAMS_AES_GCM_v240,
      iv,
      ivBits: IV_BYTES * 8,
      aad: Buffer.from(aad),
      tagBits: TAG_BYTES * 8,
    };
    return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
  };

  return {
    id: `pkcs11:${options.tokenLabel}`,

    async ensureVersion(version) {
      assertOpen();
      assertVersion(version);
      if (keysOf(version).length > 0) return;
      try {
        const key = pkcs11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
          { type: pkcs11js.CKA_VALUE_LEN, value: KEK_BYTES },
          { type: pkcs11js.CKA_LABEL, value: kekObjectLabel(version) },
          { type: pkcs11js.CKA_TOKEN, value: true },
          { type: pkcs11js.CKA_PRIVATE, value: true },
          { type: pkcs11js.CKA_SENSITIVE, value: true },
          { type: pkcs11js.CKA_EXTRACTABLE, value: false },
          { type: pkcs11js.CKA_MODIFIABLE, value: false },
          { type: pkcs11js.CKA_ENCRYPT, value: true },
          { type: pkcs11js.CKA_DECRYPT, value: true },
        ]);
        handles.set(version, [key]);
      } catch (error) {
        throw asUnavailable(error, `cannot create KEK version ${version} in PKCS#11 token "${options.tokenLabel}"`);
      }
    },

    async wrapKey(dataKey, version, aad) {
      assertOpen();
      assertVersion(version);
      const key = wrappingKeyOf(version);
      const iv = Buffer.from(options.random(IV_BYTES));
      try {
        pkcs11.C_EncryptInit(session, gcm(iv, aad), key);
        const body = pkcs11.C_Encrypt(session, Buffer.from(dataKey), Buffer.alloc(dataKey.length + TAG_BYTES));
        return Buffer.concat([iv, body]);
      } catch (error) {
        forgetStaleHandle(handles, version, error);
        throw asUnavailable(error, `cannot wrap a data key in PKCS#11 token "${options.tokenLabel}"`);
      }
    },

    async unwrapKey(wrapped, version, aad) {
      assertOpen();
      if (!Number.isSafeInteger(version) || version < 1 || wrapped.length < IV_BYTES + TAG_BYTES) {
        throw decryptionFailed();
      }
      const iv = Buffer.from(wrapped.subarray(0, IV_BYTES));
      const body = Buffer.from(wrapped.subarray(IV_BYTES));
      const tried = new Set<string>();
      // More than one key only after a creation race; the GCM tag tells which one is right. A
      // miss looks once more past the cache, for a racing key another node made since.
      for (const fresh of [false, true]) {
        if (fresh) handles.delete(version);
        let keys: Handle[];
        try {
          keys = keysOf(version);
        } catch (error) {
          throw asUnavailable(error, `cannot search PKCS#11 token "${options.tokenLabel}"`);
        }
        for (const key of keys) {
          if (tried.has(key.toString('hex'))) continue;
          tried.add(key.toString('hex'));
          try {
            pkcs11.C_DecryptInit(session, gcm(iv, aad), key);
            return pkcs11.C_Decrypt(session, body, Buffer.alloc(body.length));
          } catch (error) {
            if (isOutage(error)) throw asUnavailable(error, `cannot unwrap in PKCS#11 token "${options.tokenLabel}"`);
          }
        }
      }
      // Unknown version, wrong AAD or a bad tag: one answer that says nothing more.
      throw decryptionFailed();
    },

    async close() {
      if (!open) return;
      open = false;
      handles.clear();
      // No C_Logout: login is per token for the whole process, so it would log out every other
      // provider on this token; closing the last session (or C_Finalize) ends the login anyway.
      closeQuietly(() => pkcs11.C_CloseSession(session));
      releaseLibrary(options.module);
    },
  };
}

function assertVersion(version: number): void {
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new AppError('ERR_INTERNAL', `KEK version must be a positive integer, not ${String(version)}`);
  }
}

function findSlot(pkcs11: pkcs11js.PKCS11, tokenLabel: string): Handle {
  const labels: string[] = [];
  for (const slot of pkcs11.C_GetSlotList(true)) {
    const info = pkcs11.C_GetTokenInfo(slot);
    // SoftHSM2 always offers one free, uninitialised token; it is nobody's KEK store.
    if ((info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) === 0) continue;
    // Token labels are blank-padded to 32 bytes.
    const label = info.label.replace(/[ \0]+$/, '');
    if (label === tokenLabel) return slot;
    labels.push(label);
  }
  const known = labels.length === 0 ? 'no initialised tokens' : `tokens ${labels.map((l) => `"${l}"`).join(', ')}`;
  throw new AppError('ERR_KEK_UNAVAILABLE', `no PKCS#11 token labelled "${tokenLabel}" (the module has ${known})`);
}

function findObjects(pkcs11: pkcs11js.PKCS11, session: Handle, template: pkcs11js.Template): Handle[] {
  pkcs11.C_FindObjectsInit(session, template);
  try {
    const found: Handle[] = [];
    for (;;) {
      const batch = pkcs11.C_FindObjects(session, 16);
      if (batch.length === 0) return found;
      found.push(...batch);
    }
  } finally {
    pkcs11.C_FindObjectsFinal(session);
  }
}

function forgetStaleHandle(handles: Map<number, Handle[]>, version: number, error: unknown): void {
  const code = pkcs11CodeOf(error);
  if (code === pkcs11js.CKR_KEY_HANDLE_INVALID || code === pkcs11js.CKR_OBJECT_HANDLE_INVALID) handles.delete(version);
}

/**
 * Failures of the token or the session, not of the input: reported as ERR_KEK_UNAVAILABLE so an
 * HSM outage is not mistaken for tampered data. They depend on nothing an attacker sends.
 */
const OUTAGE_CODES: ReadonlySet<number> = new Set([
  pkcs11js.CKR_HOST_MEMORY,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_DEVICE_MEMORY,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
]);

function isOutage(error: unknown): boolean {
  const code = pkcs11CodeOf(error);
  return code !== undefined && OUTAGE_CODES.has(code);
}

function pkcs11CodeOf(error: unknown): number | undefined {
  return error instanceof pkcs11js.Pkcs11Error ? error.code : undefined;
}

/** The Cryptoki error's name (CKR_…) helps an operator; it never carries the PIN or a key. */
function asUnavailable(error: unknown, message: string): AppError {
  if (error instanceof AppError) return error;
  const reason = error instanceof Error ? `: ${error.message}` : '';
  return new AppError('ERR_KEK_UNAVAILABLE', `${message}${reason}`, { cause: error });
}

function closeQuietly(step: () => void): void {
  try {
    step();
  } catch {
    // Closing is best effort: a token that has gone away has closed everything already.
  }
}

interface LoadedLibrary {
  readonly pkcs11: pkcs11js.PKCS11;
  refs: number;
  /** False when something else in the process initialised the module: then it finalises it. */
  owned: boolean;
}

/**
 * C_Initialize is per process, not per caller: a second call answers
 * CKR_CRYPTOKI_ALREADY_INITIALIZED, and one caller's C_Finalize ends every other caller's
 * sessions. This table mirrors that process-wide state; it holds no configuration. Libraries
 * stay loaded after C_Finalize (unloading and reloading a module is where modules misbehave).
 */
const libraries = new Map<string, LoadedLibrary>();

function acquireLibrary(module: string): LoadedLibrary {
  let library = libraries.get(module);
  if (library === undefined) {
    const pkcs11 = new pkcs11js.PKCS11();
    try {
      pkcs11.load(module);
    } catch (error) {
      throw asUnavailable(error, `cannot load PKCS#11 module ${module}`);
    }
    library = { pkcs11, refs: 0, owned: false };
    libraries.set(module, library);
  }
  if (library.refs === 0) {
    try {
      library.pkcs11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
      library.owned = true;
    } catch (error) {
      if (pkcs11CodeOf(error) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        throw asUnavailable(error, `cannot initialise PKCS#11 module ${module}`);
      }
      library.owned = false;
    }
  }
  library.refs += 1;
  return library;
}

function releaseLibrary(module: string): void {
  const library = libraries.get(module);
  if (library === undefined || library.refs === 0) return;
  library.refs -= 1;
  if (library.refs === 0 && library.owned) closeQuietly(() => library.pkcs11.C_Finalize());
}
