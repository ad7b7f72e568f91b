/** `--all`: follows a list's cursor through every page, guarding against a cursor that repeats. */

/** Stops `--all` from looping forever on a server that keeps answering with a cursor. */
const MAX_PAGES = 100_000;

export interface Page<T, C> {
  readonly data: readonly T[];
  readonly nextCursor: C | null;
}

/** The first page, then (with `all`) every following one; `nextCursor` is null after `all`. */
export async function collectPages<T, C>(
  first: Page<T, C>,
  all: boolean,
  next: (cursor: C) => Promise<Page<T, C>>,
): Promise<{ data: T[]; nextCursor: C | null }> {
  const data = [...first.data];
  if (!all) return { data, nextCursor: first.nextCursor };
  const seen = new Set<C>();
  let page = first;
  for (let pages = 1; page.nextCursor !== null && pages < MAX_PAGES && !seen.has(page.nextCursor); pages += 1) {
    seen.add(page.nextCursor);
    page = await next(page.nextCursor);
    data.push(...page.data);
  }
  return { data, nextCursor: null };
}
