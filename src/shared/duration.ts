/** Durations on the wire: `90s`, `15m`, `24h`, `30d`. Always positive whole units. */
import { AppError } from './errors.js';
import { redactKeys } from './redact.js';

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_RE = /^([1-9][0-9]{0,8})(s|m|h|d)$/;

/** Parses a duration into milliseconds, or returns undefined when it is not one. */
export function tryParseDuration(text: string): number | undefined {
  const match = DURATION_RE.exec(text);
  if (!match) return undefined;
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

/** Parses a duration or throws ERR_INVALID_DURATION naming the field. */
export function parseDuration(text: string, field: string): number {
  const ms = tryParseDuration(text);
  if (ms === undefined) {
    throw new AppError(
      'ERR_INVALID_DURATION',
      `${field} must be a positive duration such as 90s, 15m, 24h or 30d (got "${truncate(text)}")`,
      { details: [{ field, message: 'expected <number><s|m|h|d>' }] },
    );
  }
  return ms;
}

/** Formats milliseconds as the largest whole unit that divides it. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${Math.ceil(ms / 1000)}s`;
}

function truncate(text: string): string {
  const printable = redactKeys(text).replace(/[\u0000-\u001f\u007f]/g, '?');
  return printable.length > 16 ? `${printable.slice(0, 16)}…` : printable;
}
