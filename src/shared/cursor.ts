/**
 * Page cursors for lists ordered by (created_at, id), newest first: opaque base64url of the last
 * row's pair. A cursor this server did not issue is a 400 naming the field.
 */
import { AppError } from './errors.js';

export function encodeCursor(createdAt: string, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString('base64url');
}

export function decodeCursor(cursor: string): [string, string] {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    const printable = (v: unknown): v is string => typeof v === 'string' && v.length <= 64 && /^[\x20-\x7e]*$/.test(v);
    if (Array.isArray(value) && value.length === 2 && printable(value[0]) && printable(value[1])) {
      return [value[0], value[1]];
    }
  } catch {
    // fall through
  }
  throw new AppError('ERR_INVALID_REQUEST', 'cursor is not one this server issued; pass nextCursor from a previous page', {
    details: [{ field: 'cursor', message: 'invalid cursor' }],
  });
}
