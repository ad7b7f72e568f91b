/** Removes anything shaped like an issued key from text that may reach a log or an error. */
const KEY_LIKE = /[a-z][a-z0-9]{1,15}_(?:live|test)_[0-9A-Za-z_]{8,}/g;

export function redactKeys(text: string): string {
  return text.replace(KEY_LIKE, '[redacted]');
}
