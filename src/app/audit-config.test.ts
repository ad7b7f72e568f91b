import { describe, expect, it } from 'vitest';
import { ConfigError, resolveConfig } from './config.js';

describe('audit checkpoint settings', () => {
  it('default to a checkpoints file in the data directory, every minute, no command or URL', () => {
    expect(resolveConfig({ data: '/srv/ks' }, {}).auditCheckpoints).toEqual({ file: '/srv/ks/audit-checkpoints.jsonl', command: undefined, url: undefined, intervalMs: 60_000 });
  });

  it('take a path, off, a command as a JSON argv, a URL and an interval from the environment', () => {
    const env = {
      KEYSMITH_AUDIT_CHECKPOINTS: '/mnt/worm/ks.jsonl',
      KEYSMITH_AUDIT_CHECKPOINT_COMMAND: '["/usr/local/bin/ship","--to","logs"]',
      KEYSMITH_AUDIT_CHECKPOINT_URL: 'https://evidence.example/checkpoints',
      KEYSMITH_AUDIT_CHECKPOINT_INTERVAL: '5m',
    };
    expect(resolveConfig({ data: '/srv/ks' }, env).auditCheckpoints).toEqual({
      file: '/mnt/worm/ks.jsonl',
      command: ['/usr/local/bin/ship', '--to', 'logs'],
      url: 'https://evidence.example/checkpoints',
      intervalMs: 300_000,
    });
    expect(resolveConfig({ data: '/srv/ks' }, { KEYSMITH_AUDIT_CHECKPOINTS: 'off' }).auditCheckpoints.file).toBeUndefined();
  });

  it('refuse a command that is not an absolute argv, a URL that is not http(s), and an interval under a second', () => {
    for (const command of ['ship --to logs', '["ship"]', '[]', '[1]']) {
      expect(() => resolveConfig({}, { KEYSMITH_AUDIT_CHECKPOINT_COMMAND: command })).toThrow(ConfigError);
    }
    expect(() => resolveConfig({}, { KEYSMITH_AUDIT_CHECKPOINT_URL: 'file:///etc/passwd' })).toThrow(ConfigError);
    expect(() => resolveConfig({}, { KEYSMITH_AUDIT_CHECKPOINT_INTERVAL: '500ms' })).toThrow(ConfigError);
  });
});
