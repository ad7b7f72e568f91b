import { describe, expect, it } from 'vitest';
import { ConfigFileError, parseConfigText, loadConfigFile, type ConfigFileIO } from './config-file.js';
import { resolveConfig } from './config.js';
import { sha256Hex } from '../outbound/index.js';

const SCRIPT = Buffer.from('#!/bin/sh\nexit 0\n');
const SCRIPT_SHA = sha256Hex(SCRIPT);

/** A file system of a few files with their modes. */
function io(files: Record<string, { text?: string; bytes?: Buffer; mode: number }>): ConfigFileIO {
  return {
    readText: (path) => files[path]?.text ?? (() => { throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' }); })(),
    readBytes: (path) => files[path]?.bytes ?? Buffer.from(files[path]?.text ?? ''),
    mode: (path) => files[path]?.mode,
  };
}

const tools = io({ '/opt/keysmith/rotate': { bytes: SCRIPT, mode: 0o755 }, '/tmp/open': { bytes: SCRIPT, mode: 0o777 } });

function problems(text: string, files: ConfigFileIO = tools): readonly string[] {
  try {
    parseConfigText('/etc/keysmith.yaml', text, files);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigFileError);
    return (error as ConfigFileError).problems;
  }
  throw new Error('expected the file to be refused');
}

describe('configuration file', () => {
  it('maps readable names onto the KEYSMITH_* settings, and reads programs and egress', () => {
    const file = parseConfigText(
      '/etc/keysmith.yaml',
      [
        'listen: 0.0.0.0:7370',
        'trustProxy: true',
        'fastVerify: false',
        'keys:',
        '  maxTtl: 30d',
        '  defaultTtl: 7d',
        'kek:',
        '  provider: pkcs11',
        '  pkcs11: { token: prod, pinFile: /run/secrets/pin }',
        'rotation: { scheduler: false, tickMs: 250 }',
        'events: { poll: 2s }',
        'programs:',
        '  - name: rotate-stripe',
        '    path: /opt/keysmith/rotate',
        `    sha256: ${SCRIPT_SHA.toUpperCase()}`,
        '    args: [--config, /etc/stripe.json]',
        '    allowArgs: ["--account=[a-z0-9_]+"]',
        'egress:',
        '  allow: [api.stripe.com:443, "*.sendgrid.net:443", "10.0.0.0/8:5432", "[fd00::1]:443"]',
      ].join('\n'),
      tools,
    );
    expect(file.env).toEqual({
      KEYSMITH_LISTEN: '0.0.0.0:7370',
      KEYSMITH_TRUST_PROXY: '1',
      KEYSMITH_FAST_VERIFY: '0',
      KEYSMITH_MAX_TTL: '30d',
      KEYSMITH_DEFAULT_TTL: '7d',
      KEYSMITH_KEK_PROVIDER: 'pkcs11',
      KEYSMITH_PKCS11_TOKEN: 'prod',
      KEYSMITH_PKCS11_PIN_FILE: '/run/secrets/pin',
      KEYSMITH_ROTATION_SCHEDULER: '0',
      KEYSMITH_ROTATION_TICK_MS: '250',
      KEYSMITH_EVENTS_POLL: '2s',
    });
    expect(file.programs).toEqual([{ name: 'rotate-stripe', path: '/opt/keysmith/rotate', sha256: SCRIPT_SHA, args: ['--config', '/etc/stripe.json'], allowArgs: ['--account=[a-z0-9_]+'] }]);
    expect(file.egress.allow).toEqual(['api.stripe.com:443', '*.sendgrid.net:443', '10.0.0.0/8:5432', '[fd00::1]:443']);
  });

  it('keeps a PIN or token label written as digits as it is written', () => {
    expect(parseConfigText('/etc/keysmith.yaml', 'kek:\n  pkcs11: { pin: 0042, token: 2024 }\n', tools).env).toEqual({ KEYSMITH_PKCS11_PIN: '0042', KEYSMITH_PKCS11_TOKEN: '2024' });
  });

  it('reads the audit checkpoint settings, the sink command as a list that no shell splits', () => {
    const text = [
      'audit:',
      '  checkpoints: /var/log/keysmith/checkpoints.jsonl',
      '  checkpointCommand: [/usr/local/bin/ship-checkpoint, --to, evidence host]',
      '  checkpointUrl: https://collector.example/checkpoints',
      '  checkpointInterval: 5m',
    ].join('\n');
    const file = parseConfigText('/etc/keysmith.yaml', text, tools);
    expect(file.env).toEqual({
      KEYSMITH_AUDIT_CHECKPOINTS: '/var/log/keysmith/checkpoints.jsonl',
      KEYSMITH_AUDIT_CHECKPOINT_COMMAND: '["/usr/local/bin/ship-checkpoint","--to","evidence host"]',
      KEYSMITH_AUDIT_CHECKPOINT_URL: 'https://collector.example/checkpoints',
      KEYSMITH_AUDIT_CHECKPOINT_INTERVAL: '5m',
    });
    const config = resolveConfig({ config: '/etc/keysmith.yaml' }, {}, io({ '/etc/keysmith.yaml': { text, mode: 0o600 } }));
    expect(config.auditCheckpoints).toEqual({
      file: '/var/log/keysmith/checkpoints.jsonl',
      command: ['/usr/local/bin/ship-checkpoint', '--to', 'evidence host'],
      url: 'https://collector.example/checkpoints',
      intervalMs: 300_000,
    });
    expect(problems('audit:\n  checkpointCommand: ship-checkpoint --to evidence\n  checkpointInterval: often\n')).toEqual([
      '/etc/keysmith.yaml:2:22: audit.checkpointCommand must be a list of strings starting with an absolute program path, such as [/usr/local/bin/ship, --to, evidence]',
      '/etc/keysmith.yaml:3:23: audit.checkpointInterval must be a duration such as 90s, 15m, 24h or 30d',
    ]);
    expect(problems('audit:\n  checkpointCommand: [bin/ship]\n')).toEqual([expect.stringMatching(/^\/etc\/keysmith\.yaml:2:22: audit\.checkpointCommand must be a list/)]);
  });

  it('takes programs as a map of name to registration too', () => {
    const file = parseConfigText('/etc/keysmith.yaml', `programs:\n  rotate-stripe:\n    path: /opt/keysmith/rotate\n    sha256: ${SCRIPT_SHA}\n`, tools);
    expect(file.programs).toEqual([{ name: 'rotate-stripe', path: '/opt/keysmith/rotate', sha256: SCRIPT_SHA, args: [] }]);
  });

  it('names FILE:LINE:COL for bad YAML', () => {
    expect(problems('keys:\n  maxTtl: [30d\n')[0]).toMatch(/^\/etc\/keysmith\.yaml:\d+:\d+: /);
    expect(problems('listen: a\nlisten: b\n')).toEqual([expect.stringMatching(/^\/etc\/keysmith\.yaml:2:1: .*unique/i)]);
  });

  it('names FILE:LINE:COL for every unknown key and wrong type', () => {
    expect(problems(['listen: 7370', 'lissen: x', 'keys:', '  maxTTL: 30d', '  maxTtl: 30', 'trustProxy: "yes"', 'rotation:', '  tickMs: fast', 'egress:', '  deny: []', '  allow: [nope]'].join('\n'))).toEqual([
      '/etc/keysmith.yaml:2:1: unknown setting "lissen"; known: data, database, listen, logLevel, trustProxy, fastVerify, keys, kek, rotation, events, audit, http, auth, programs, egress',
      '/etc/keysmith.yaml:4:3: unknown setting "keys.maxTTL"; keys holds defaultTtl, maxTtl, cacheTtl',
      '/etc/keysmith.yaml:5:11: keys.maxTtl must be a duration such as 90s, 15m, 24h or 30d',
      '/etc/keysmith.yaml:6:13: trustProxy must be true or false',
      '/etc/keysmith.yaml:8:11: rotation.tickMs must be a whole number of milliseconds',
      '/etc/keysmith.yaml:10:3: unknown setting "egress.deny"; egress holds allow',
      '/etc/keysmith.yaml:11:11: egress.allow: "nope" must be host:port (write IPv6 as [::1]:443; the port may be *)',
    ]);
    expect(problems('- a\n- b\n')).toEqual(['/etc/keysmith.yaml:1:1: the configuration must be a map of settings']);
  });

  it('refuses a program that is not absolute, whose hash does not match, that others can replace, or that is missing', () => {
    expect(
      problems(
        [
          'programs:',
          '  - name: relative',
          `    path: bin/rotate`,
          `    sha256: ${SCRIPT_SHA}`,
          '  - name: wrong-hash',
          '    path: /opt/keysmith/rotate',
          `    sha256: ${'0'.repeat(64)}`,
          '  - name: open',
          '    path: /tmp/open',
          `    sha256: ${SCRIPT_SHA}`,
          '  - name: missing',
          '    path: /opt/none',
          `    sha256: ${SCRIPT_SHA}`,
          '  - name: Bad Name',
          '    path: /opt/keysmith/rotate',
          '    sha256: abc',
          '    shell: true',
          '    allowArgs: ["("]',
          '  - name: wrong-hash',
          '    path: /opt/keysmith/rotate',
          `    sha256: ${SCRIPT_SHA}`,
        ].join('\n'),
      ),
    ).toEqual([
      '/etc/keysmith.yaml:3:11: path must be the absolute path of the program',
      `/etc/keysmith.yaml:7:13: program "wrong-hash": sha256 does not match /opt/keysmith/rotate (the file has ${SCRIPT_SHA})`,
      '/etc/keysmith.yaml:9:11: program "open": /tmp/open is writable by group or others (mode 0777), so anyone could replace it',
      '/etc/keysmith.yaml:12:11: program "missing": /opt/none does not exist',
      '/etc/keysmith.yaml:17:5: unknown program field "shell"; a program has name, path, sha256, args, allowArgs',
      '/etc/keysmith.yaml:14:11: a program name is lowercase letters, digits, ".", "_" and "-", at most 63 characters',
      '/etc/keysmith.yaml:16:13: sha256 must be the file\'s SHA-256 in hex (sha256sum FILE)',
      '/etc/keysmith.yaml:18:17: allowArgs.0 is not a valid regular expression',
      '/etc/keysmith.yaml:19:11: program "wrong-hash" is registered twice',
    ]);
  });

  it('refuses a file that group or others can read or write, and one that does not exist', () => {
    const modes = (mode: number) => io({ '/etc/keysmith.yaml': { text: 'listen: 7370\n', mode } });
    expect(() => loadConfigFile('/etc/keysmith.yaml', modes(0o644))).toThrow('/etc/keysmith.yaml: the configuration file is open to group or others (mode 0644); run "chmod 600 /etc/keysmith.yaml" and start again');
    expect(() => loadConfigFile('/etc/keysmith.yaml', modes(0o620))).toThrow(/mode 0620/);
    expect(() => loadConfigFile('/etc/keysmith.yaml', modes(0o604))).toThrow(/mode 0604/);
    expect(loadConfigFile('/etc/keysmith.yaml', modes(0o600)).env).toEqual({ KEYSMITH_LISTEN: '7370' });
    expect(loadConfigFile('/etc/keysmith.yaml', modes(0o400)).env).toEqual({ KEYSMITH_LISTEN: '7370' });
    expect(() => loadConfigFile('/etc/nothing.yaml', modes(0o600))).toThrow('/etc/nothing.yaml: the configuration file does not exist');
  });
});

describe('configuration precedence', () => {
  const files = io({
    '/etc/keysmith.yaml': { text: 'listen: 10.0.0.1:7000\nkeys: { maxTtl: 30d, defaultTtl: 1d }\nlogLevel: warn\negress: { allow: ["api.acme.com:443"] }\n', mode: 0o600 },
    '/srv/data/keysmith.yaml': { text: 'keys: { maxTtl: 10d }\n', mode: 0o600 },
    '/srv/other/keysmith.yaml': { text: 'data: /elsewhere\n', mode: 0o600 },
  });

  it('the environment overrides the file, and flags override both', () => {
    const config = resolveConfig({ config: '/etc/keysmith.yaml', logLevel: 'debug', data: '/srv/x' }, { KEYSMITH_MAX_TTL: '60d', KEYSMITH_LISTEN: '' }, files);
    expect(config.configFile).toBe('/etc/keysmith.yaml');
    expect(config.port).toBe(7000);
    expect(config.host).toBe('10.0.0.1');
    expect(config.keyPolicy.maxTtlMs).toBe(60 * 86_400_000);
    expect(config.keyPolicy.defaultTtlMs).toBe(86_400_000);
    expect(config.logLevel).toBe('debug');
    expect(config.egress.allow).toEqual(['api.acme.com:443']);
    expect(config.sources).toMatchObject({ KEYSMITH_LISTEN: 'file', KEYSMITH_MAX_TTL: 'env', KEYSMITH_LOG_LEVEL: 'flag', KEYSMITH_DATA: 'flag' });
  });

  it('keeps no KEYSMITH_* value that is not a setting of the file, the master key above all', () => {
    const config = resolveConfig({ config: '/etc/keysmith.yaml' }, { KEYSMITH_MASTER_KEY: 'bWFzdGVyLWtleS1tdXN0LW5vdC1hcHBlYXI=', KEYSMITH_TOKEN: 'ksm_live_x' }, files);
    expect(JSON.stringify(config)).not.toContain('bWFzdGVyLWtleS1tdXN0LW5vdC1hcHBlYXI=');
    expect(JSON.stringify(config)).not.toContain('ksm_live_x');
  });

  it('finds keysmith.yaml in the data directory, or the one KEYSMITH_CONFIG names', () => {
    expect(resolveConfig({ data: '/srv/data' }, {}, files).keyPolicy.maxTtlMs).toBe(10 * 86_400_000);
    expect(resolveConfig({ data: '/srv/none' }, {}, files).configFile).toBeUndefined();
    expect(resolveConfig({ data: '/srv/none' }, { KEYSMITH_CONFIG: '/etc/keysmith.yaml' }, files).port).toBe(7000);
    expect(() => resolveConfig({ data: '/srv/other' }, {}, files)).toThrow(/data may be set only in a file given by --config/);
    expect(() => resolveConfig({ config: '/etc/missing.yaml' }, {}, files)).toThrow(/does not exist/);
  });
});
