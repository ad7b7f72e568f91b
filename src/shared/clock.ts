/** Time is injected so that tests can fix it. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that tests move by hand. */
export class ManualClock implements Clock {
  #now: number;
  constructor(start: number | string = Date.UTC(2026, 0, 1)) {
    this.#now = typeof start === 'string' ? Date.parse(start) : start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
  set(at: number | string): void {
    this.#now = typeof at === 'string' ? Date.parse(at) : at;
  }
}

export function toIso(ms: number): string {
  return new Date(ms).toISOString();
}
