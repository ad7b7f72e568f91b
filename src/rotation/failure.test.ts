import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { formatKey } from '../keys/key-format.js';
import { secureRandom } from '../crypto/index.js';
import { AppError } from '../shared/errors.js';
import { ConnectorError } from './connectors/connector.js';
import { bounded, MAX_FAILURE_CHARS, scrubText, summariseFailure } from './failure.js';

const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const masterKey = randomBytes(32).toString('base64');
const hexKey = randomBytes(32).toString('hex');
const keysmithKey = formatKey('ksm', 'live', 'A'.repeat(22), secureRandom);

describe('scrubText', () => {
  it('removes a real Keysmith key, told by its checksum', () => {
    const out = scrubText(`token ${keysmithKey} refused`);
    expect(out).toBe('token [redacted key] refused');
  });

  it('removes PEM blocks, whole or cut short', () => {
    expect(scrubText(`before\n${pem}after`)).toBe('before\n[redacted PEM block]\nafter');
    const cut = pem.slice(0, 60);
    expect(scrubText(`x ${cut}`)).toBe('x [redacted PEM block]');
  });

  it('removes long base64 (standard and URL-safe) and hex runs', () => {
    const urlSafe = randomBytes(40).toString('base64url');
    const out = scrubText(`k=${masterKey} h=${hexKey} u=${urlSafe}`);
    expect(out).not.toContain(masterKey);
    expect(out).not.toContain(hexKey);
    expect(out).not.toContain(urlSafe);
    expect(out).toBe('k=[redacted] h=[redacted] u=[redacted]');
  });

  it('removes every value the run read or produced, in any encoding, including short ones and structured values', () => {
    const read = { username: 'app_user', password: 'p@ss w/rd!' };
    const out = scrubText(`login app_user:p@ss w/rd! failed; url p%40ss%20w%2Frd! json "p@ss w/rd!"; new sk_live_1`, [read, 'sk_live_1']);
    expect(out).not.toContain('p@ss');
    expect(out).not.toContain('p%40ss');
    expect(out).not.toContain('app_user');
    expect(out).not.toContain('sk_live_1');
  });

  it('removes a short value base64- or hex-encoded, and withholds a text that holds one split across lines or spaced out', () => {
    const admin = 'adm-Tok3n-9f8e7d';
    const b64 = Buffer.from(admin).toString('base64');
    const out = scrubText(`a ${b64} b ${b64.replace(/=+$/, '')} c ${Buffer.from(admin).toString('hex')} d ${Buffer.from(admin).toString('hex').toUpperCase()}`, [admin]);
    expect(out).toBe('a [redacted] b [redacted] c [redacted] d [redacted]');
    for (const split of [`token ${admin.slice(0, 8)}\n${admin.slice(8)} refused`, `token ${admin.split('').join(' ')} refused`, `t ${b64.slice(0, 10)}\n${b64.slice(10)}`]) {
      expect(scrubText(split, [admin])).toBe('[withheld: it held a value the run read, split up]');
    }
    // Short values are not looked for across whitespace: "bad mint" is not "admin".
    expect(scrubText('a bad mint', ['admin'])).toBe('a bad mint');
  });

  it('keeps ordinary words, paths, ids and statuses', () => {
    const text = 'command connector, create: the program exited with status 1; stderr: cannot open payments/stripe/production/api-key for run rot_0123456789abcdefghijkl';
    expect(scrubText(text)).toBe(text);
  });
});

describe('summariseFailure', () => {
  it('keeps a Keysmith error message, scrubbed and at most 300 characters', () => {
    const stderr = `cat: secret hunter22-value\n${masterKey}\n${pem}${'noise '.repeat(200)}`;
    const error = new ConnectorError('ERR_CONNECTOR_FAILED', `command connector, create: the program exited with status 1; stderr: ${stderr}`, { connector: 'command', retryable: false });
    const summary = summariseFailure(error, ['hunter22-value']);
    expect(summary.length).toBeLessThanOrEqual(MAX_FAILURE_CHARS);
    expect(summary).toContain('exited with status 1');
    for (const leaked of ['hunter22-value', masterKey, 'BEGIN PRIVATE KEY', pem.split('\n')[1]!]) expect(summary).not.toContain(leaked);
  });

  it('gives only the class of an unexpected error, never its message', () => {
    const summary = summariseFailure(new TypeError(`boom ${masterKey}`), [], 'set');
    expect(summary).toBe('set failed unexpectedly (TypeError)');
    expect(summariseFailure(new AppError('ERR_SECRET_NOT_FOUND', 'no secret at a/b'))).toBe('no secret at a/b');
  });

  it('bounds text with a mark', () => {
    expect(bounded('a'.repeat(400))).toHaveLength(MAX_FAILURE_CHARS);
    expect(bounded('a'.repeat(400)).endsWith('…')).toBe(true);
    expect(bounded('short')).toBe('short');
  });
});
