import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import {
  createPkcs11KekProvider,
  openEnvelope,
  rewrapEnvelope,
  sealEnvelope,
  secureRandom,
  type KekProvider,
} from '../../src/crypto/index.js';
import { AppError } from '../../src/shared/errors.js';
import { createSoftHsmToken, describeWithSoftHsm, type SoftHsmToken } from '../support/softhsm.js';

const aad = (text: string): Buffer => Buffer.from(text);

async function expectCode(promise: Promise<unknown>, code: string): Promise<AppError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  expect((error as AppError).code).toBe(code);
  return error as AppError;
}

async function expectDecryptionFailed(promise: Promise<unknown>): Promise<void> {
  const error = await expectCode(promise, 'ERR_DECRYPTION_FAILED');
  expect(error.message).toBe('decryption failed');
}

describeWithSoftHsm('PKCS#11 KEK provider on a SoftHSM2 token', () => {
  let token: SoftHsmToken;
  const open: KekProvider[] = [];

  const openProvider = (overrides: { tokenLabel?: string; pin?: string; random?: (n: number) => Uint8Array } = {}): KekProvider => {
    const provider = createPkcs11KekProvider({
      module: token.module,
      tokenLabel: overrides.tokenLabel ?? token.tokenLabel,
      pin: overrides.pin ?? token.pin,
      random: overrides.random ?? secureRandom,
    });
    open.push(provider);
    return provider;
  };

  /**
   * Looks into the token with a session of its own. A Cryptoki module is initialised once per
   * process: when a provider has done so, this shares it (and its login) and leaves it be.
   */
  const inspectToken = <T>(look: (p: pkcs11js.PKCS11, session: Buffer) => T): T => {
    const p = new pkcs11js.PKCS11();
    p.load(token.module);
    const tolerate = (code: number, step: () => void): boolean => {
      try {
        step();
        return true;
      } catch (error) {
        if ((error as pkcs11js.Pkcs11Error).code !== code) throw error;
        return false;
      }
    };
    const initialised = tolerate(pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED, () => p.C_Initialize());
    try {
      const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trimEnd() === token.tokenLabel);
      if (slot === undefined) throw new Error('test token not found');
      const session = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
      try {
        tolerate(pkcs11js.CKR_USER_ALREADY_LOGGED_IN, () => p.C_Login(session, pkcs11js.CKU_USER, token.pin));
        return look(p, session);
      } finally {
        p.C_CloseSession(session);
      }
    } finally {
      if (initialised) p.C_Finalize();
    }
  };

  const generateRacingKey = (p: pkcs11js.PKCS11, s: Buffer, version: number): Buffer =>
    p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_LABEL, value: `keysmith-kek-v${version}` },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
    ]);

  const keysLabelled = (p: pkcs11js.PKCS11, session: Buffer, label: string): Buffer[] => {
    p.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: label }]);
    const found = p.C_FindObjects(session, 100);
    p.C_FindObjectsFinal(session);
    return found;
  };

  beforeAll(() => {
    token = createSoftHsmToken();
  });
  afterEach(async () => {
    for (const provider of open.splice(0)) await provider.close();
  });
  afterAll(() => token?.cleanup());

  it('names itself after the token', () => {
    expect(openProvider().id).toBe(`pkcs11:${token.tokenLabel}`);
  });

  it('creates one key object per version, however often ensureVersion runs', async () => {
    const kek = openProvider();
    await kek.ensureVersion(1);
    await kek.ensureVersion(1);
    await kek.close();
    const again = openProvider();
    await again.ensureVersion(1);
    await again.close();
    const counts = inspectToken((p, s) => [keysLabelled(p, s, 'keysmith-kek-v1').length, keysLabelled(p, s, 'keysmith-kek-v2').length]);
    expect(counts).toEqual([1, 0]);
  });

  it('keeps the KEK inside the token: sensitive, not extractable, its value unreadable', async () => {
    const kek = openProvider();
    await kek.ensureVersion(1);
    await kek.close();
    const seen = inspectToken((p, s) => {
      const [key] = keysLabelled(p, s, 'keysmith-kek-v1');
      const attrs = p.C_GetAttributeValue(s, key!, [
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_TOKEN },
        { type: pkcs11js.CKA_VALUE_LEN },
      ]);
      let valueError: unknown;
      try {
        p.C_GetAttributeValue(s, key!, [{ type: pkcs11js.CKA_VALUE }]);
      } catch (error) {
        valueError = error;
      }
      // CK_BBOOL is one byte, CK_ULONG eight (little-endian here).
      return { attrs: attrs.map((a) => [...(a.value as Buffer)].reduceRight((n, byte) => n * 256 + byte, 0)), valueError };
    });
    expect(seen.attrs).toEqual([0, 1, 1, 32]);
    expect(seen.valueError).toBeInstanceOf(pkcs11js.Pkcs11Error);
    expect((seen.valueError as pkcs11js.Pkcs11Error).code).toBe(pkcs11js.CKR_ATTRIBUTE_SENSITIVE);
  });

  it('wraps and unwraps a data key as IV ‖ ciphertext ‖ tag, with the IV from the injected random source', async () => {
    const ivs: Buffer[] = [];
    const kek = openProvider({
      random: (n) => {
        const bytes = randomBytes(n);
        ivs.push(bytes);
        return bytes;
      },
    });
    await kek.ensureVersion(1);
    const dataKey = randomBytes(32);
    const wrapped = await kek.wrapKey(dataKey, 1, aad('sec_1/v1'));
    expect(wrapped.length).toBe(12 + 32 + 16);
    expect(wrapped.subarray(0, 12)).toEqual(ivs[0]);
    expect(wrapped.includes(dataKey)).toBe(false);
    expect(await kek.unwrapKey(wrapped, 1, aad('sec_1/v1'))).toEqual(dataKey);
    const second = await kek.wrapKey(dataKey, 1, aad('sec_1/v1'));
    expect(second.equals(wrapped)).toBe(false);
    expect(await kek.unwrapKey(second, 1, aad('sec_1/v1'))).toEqual(dataKey);
  });

  it('answers only "decryption failed" to a wrong AAD, version, unknown version, truncated or tampered input', async () => {
    const kek = openProvider();
    await kek.ensureVersion(1);
    await kek.ensureVersion(2);
    const wrapped = await kek.wrapKey(randomBytes(32), 1, aad('sec_1/v1'));
    await expectDecryptionFailed(kek.unwrapKey(wrapped, 1, aad('sec_2/v1')));
    await expectDecryptionFailed(kek.unwrapKey(wrapped, 2, aad('sec_1/v1')));
    await expectDecryptionFailed(kek.unwrapKey(wrapped, 99, aad('sec_1/v1')));
    await expectDecryptionFailed(kek.unwrapKey(wrapped, 0, aad('sec_1/v1')));
    await expectDecryptionFailed(kek.unwrapKey(wrapped.subarray(0, wrapped.length - 1), 1, aad('sec_1/v1')));
    await expectDecryptionFailed(kek.unwrapKey(wrapped.subarray(0, 27), 1, aad('sec_1/v1')));
    await expectDecryptionFailed(kek.unwrapKey(Buffer.alloc(0), 1, aad('sec_1/v1')));
    for (const at of [0, 12, wrapped.length - 1]) {
      const tampered = Buffer.from(wrapped);
      tampered[at]! ^= 0x01;
      await expectDecryptionFailed(kek.unwrapKey(tampered, 1, aad('sec_1/v1')));
    }
    // The session is still usable after the failures.
    expect((await kek.unwrapKey(wrapped, 1, aad('sec_1/v1'))).length).toBe(32);
  });

  it('gives different wrapped keys under different versions', async () => {
    const kek = openProvider();
    await kek.ensureVersion(1);
    await kek.ensureVersion(2);
    const dataKey = randomBytes(32);
    const fixedIv = (n: number): Uint8Array => Buffer.alloc(n, 7);
    const fixed = openProvider({ random: fixedIv });
    const v1 = await fixed.wrapKey(dataKey, 1, aad('a'));
    const v2 = await fixed.wrapKey(dataKey, 2, aad('a'));
    expect(v1.subarray(0, 12)).toEqual(v2.subarray(0, 12));
    expect(v1.equals(v2)).toBe(false);
  });

  it('refuses to wrap under a version that was never created', async () => {
    const kek = openProvider();
    await expectCode(kek.wrapKey(randomBytes(32), 42, aad('a')), 'ERR_KEK_UNAVAILABLE');
  });

  it('keeps versions across close and reopen: a key wrapped before unwraps after', async () => {
    const first = openProvider();
    await first.ensureVersion(3);
    const dataKey = randomBytes(32);
    const wrapped = await first.wrapKey(dataKey, 3, aad('sec_9/v4'));
    await first.close();
    const second = openProvider();
    expect(await second.unwrapKey(wrapped, 3, aad('sec_9/v4'))).toEqual(dataKey);
  });

  it('seals, opens and re-wraps an envelope from v1 to v2 without touching the sealed value', async () => {
    const kek = openProvider();
    await kek.ensureVersion(1);
    await kek.ensureVersion(2);
    const value = Buffer.from('sk_live_vendor_secret');
    const binding = aad('sec_pay/v1');
    const envelope = await sealEnvelope(kek, 1, value, binding, secureRandom);
    expect(envelope).toMatchObject({ kekId: `pkcs11:${token.tokenLabel}`, kekVersion: 1 });
    expect(await openEnvelope(kek, envelope, binding)).toEqual(value);

    const moved = await rewrapEnvelope(kek, envelope, 2, binding);
    expect(moved.kekVersion).toBe(2);
    expect(moved.sealed.equals(envelope.sealed)).toBe(true);
    expect(moved.wrappedKey.equals(envelope.wrappedKey)).toBe(false);
    expect(await openEnvelope(kek, moved, binding)).toEqual(value);
    await expectDecryptionFailed(openEnvelope(kek, { ...envelope, kekVersion: 2 }, binding));
    await expectDecryptionFailed(openEnvelope(kek, moved, aad('sec_other/v1')));
  });

  it('shares one C_Initialize between providers: closing one leaves the other working', async () => {
    const a = openProvider();
    const b = openProvider();
    await a.ensureVersion(1);
    const dataKey = randomBytes(32);
    const wrapped = await a.wrapKey(dataKey, 1, aad('x'));
    await a.close();
    await a.close();
    expect(await b.unwrapKey(wrapped, 1, aad('x'))).toEqual(dataKey);
    await expectCode(a.wrapKey(dataKey, 1, aad('x')), 'ERR_KEK_UNAVAILABLE');
    await expectCode(a.unwrapKey(wrapped, 1, aad('x')), 'ERR_KEK_UNAVAILABLE');
  });

  it('says ERR_KEK_UNAVAILABLE for a token label that does not exist, and the module stays usable', async () => {
    let error: unknown;
    try {
      openProvider({ tokenLabel: 'no-such-token' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('ERR_KEK_UNAVAILABLE');
    expect((error as AppError).message).toContain('no-such-token');
    expect((error as AppError).message).toContain(`"${token.tokenLabel}"`);
    const kek = openProvider();
    await kek.ensureVersion(1);
  });

  it('says ERR_KEK_UNAVAILABLE for a wrong PIN, without repeating the PIN', () => {
    let error: unknown;
    try {
      openProvider({ pin: 'wrong-pin-0000' });
    } catch (e) {
      error = e;
    }
    expect((error as AppError).code).toBe('ERR_KEK_UNAVAILABLE');
    expect((error as AppError).message).not.toContain('wrong-pin-0000');
  });

  it('refuses to wrap when two keys share a version label, yet still unwraps with the right one', async () => {
    const kek = openProvider();
    await kek.ensureVersion(7);
    const dataKey = randomBytes(32);
    const wrapped = await kek.wrapKey(dataKey, 7, aad('r'));
    await kek.close();
    inspectToken((p, s) => generateRacingKey(p, s, 7));
    const raced = openProvider();
    await expectCode(raced.wrapKey(dataKey, 7, aad('r')), 'ERR_KEK_UNAVAILABLE');
    expect(await raced.unwrapKey(wrapped, 7, aad('r'))).toEqual(dataKey);
  });

  it('unwraps a key wrapped by a racing node under its own copy of the version, past the handle cache', async () => {
    const kek = openProvider();
    await kek.ensureVersion(8);
    const mine = await kek.wrapKey(randomBytes(32), 8, aad('r'));
    expect((await kek.unwrapKey(mine, 8, aad('r'))).length).toBe(32);
    // Another node wraps with the key it created, in the provider's IV ‖ ciphertext ‖ tag layout.
    const dataKey = randomBytes(32);
    const theirs = inspectToken((p, s) => {
      const key = generateRacingKey(p, s, 8);
      const iv = randomBytes(12);
      const parameter: pkcs11js.GcmParams = { type: pkcs11js.CK_PARAMS_AES_GCM_v240, iv, ivBits: 96, aad: aad('r'), tagBits: 128 };
      p.C_EncryptInit(s, { mechanism: pkcs11js.CKM_AES_GCM, parameter }, key);
      return Buffer.concat([iv, p.C_Encrypt(s, dataKey, Buffer.alloc(48))]);
    });
    expect(await kek.unwrapKey(theirs, 8, aad('r'))).toEqual(dataKey);
    expect((await kek.unwrapKey(mine, 8, aad('r'))).length).toBe(32);
  });
});
