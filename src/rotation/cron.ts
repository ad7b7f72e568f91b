/**
 * Five-field cron expressions (minute hour day-of-month month day-of-week), parsed here rather
 * than by a dependency because only two questions are asked of them: is it well formed, and how
 * close together can two firings come. Fields take `*`, numbers, ranges, steps and lists; as in
 * Vixie cron, when both day fields are restricted a day matches either.
 */

export interface CronFields {
  readonly minutes: readonly number[];
  readonly hours: readonly number[];
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 = Sunday; 7 is read as 0. */
  readonly daysOfWeek: ReadonlySet<number>;
  readonly domRestricted: boolean;
  readonly dowRestricted: boolean;
}

export type CronParse = { readonly ok: true; readonly fields: CronFields } | { readonly ok: false; readonly message: string };

const FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day-of-week', min: 0, max: 7 },
] as const;

const ITEM_RE = /^(\*|(\d{1,2})(?:-(\d{1,2}))?)(?:\/(\d{1,2}))?$/;
const MINUTES_PER_DAY = 1440;
const DAY_MS = 86_400_000;
/** Four years from a leap year: every day-of-month and weekday combination occurs. */
const SPAN_START = Date.UTC(2024, 0, 1);
const SPAN_DAYS = 4 * 365 + 1;

function parseField(text: string, field: (typeof FIELDS)[number]): Set<number> | string {
  const values = new Set<number>();
  for (const item of text.split(',')) {
    const match = ITEM_RE.exec(item);
    if (!match) return `${field.name} field "${text}" is not valid: use *, numbers, ranges (1-5), steps (*/15) and lists (1,15)`;
    const step = match[4] === undefined ? 1 : Number(match[4]);
    let from: number = field.min;
    let to: number = field.max;
    if (match[2] !== undefined) {
      from = Number(match[2]);
      to = match[3] !== undefined ? Number(match[3]) : match[4] !== undefined ? field.max : from;
    }
    if (from < field.min || to > field.max || from > to) return `${field.name} field "${text}" is outside ${field.min}-${field.max}`;
    if (step < 1) return `${field.name} field "${text}" has a step of 0`;
    for (let value = from; value <= to; value += step) values.add(value);
  }
  return values;
}

export function parseCron(expression: string): CronParse {
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== 5) return { ok: false, message: `cron "${expression.slice(0, 60)}" must have 5 fields (minute hour day-of-month month day-of-week), not ${parts.length}` };
  const sets: Set<number>[] = [];
  for (const [index, field] of FIELDS.entries()) {
    const parsed = parseField(parts[index]!, field);
    if (typeof parsed === 'string') return { ok: false, message: parsed };
    sets.push(parsed);
  }
  const [minutes, hours, daysOfMonth, months, daysOfWeek] = sets as [Set<number>, Set<number>, Set<number>, Set<number>, Set<number>];
  if (daysOfWeek.delete(7)) daysOfWeek.add(0);
  return {
    ok: true,
    fields: {
      minutes: [...minutes].sort((a, b) => a - b),
      hours: [...hours].sort((a, b) => a - b),
      daysOfMonth,
      months,
      daysOfWeek,
      domRestricted: parts[2] !== '*',
      dowRestricted: parts[4] !== '*',
    },
  };
}

function dayMatches(fields: CronFields, date: Date): boolean {
  if (!fields.months.has(date.getUTCMonth() + 1)) return false;
  const dom = fields.daysOfMonth.has(date.getUTCDate());
  const dow = fields.daysOfWeek.has(date.getUTCDay());
  if (fields.domRestricted && fields.dowRestricted) return dom || dow;
  return (!fields.domRestricted || dom) && (!fields.dowRestricted || dow);
}

/**
 * The smallest time between two consecutive firings, in milliseconds; undefined when the
 * expression never fires (30 February). One firing in four years counts as four years apart.
 */
export function smallestCronGapMs(fields: CronFields): number | undefined {
  const times = fields.hours.flatMap((hour) => fields.minutes.map((minute) => hour * 60 + minute));
  const first = times[0]!;
  const last = times[times.length - 1]!;
  let gap = Infinity;
  for (let i = 1; i < times.length; i += 1) gap = Math.min(gap, times[i]! - times[i - 1]!);
  let previousDay: number | undefined;
  let firingDays = 0;
  for (let day = 0; day < SPAN_DAYS; day += 1) {
    if (!dayMatches(fields, new Date(SPAN_START + day * DAY_MS))) continue;
    firingDays += 1;
    if (previousDay !== undefined) gap = Math.min(gap, (day - previousDay) * MINUTES_PER_DAY - (last - first));
    previousDay = day;
  }
  if (firingDays === 0) return undefined;
  return gap === Infinity ? SPAN_DAYS * DAY_MS : gap * 60_000;
}

/**
 * The latest firing at or before `atMs` (UTC), looking back at most `lookbackMs`; undefined when
 * there is none in that span. The scheduler asks it for the firing whose window is open.
 */
export function latestFiring(fields: CronFields, atMs: number, lookbackMs: number): number | undefined {
  const dayStart = (ms: number) => ms - (ms % DAY_MS);
  const earliest = atMs - lookbackMs;
  const minutesDesc = fields.hours.flatMap((hour) => fields.minutes.map((minute) => hour * 60 + minute)).sort((a, b) => b - a);
  for (let day = dayStart(atMs); day >= dayStart(earliest); day -= DAY_MS) {
    if (!dayMatches(fields, new Date(day))) continue;
    for (const minute of minutesDesc) {
      const at = day + minute * 60_000;
      if (at <= atMs) return at >= earliest ? at : undefined;
    }
  }
  return undefined;
}
