/** Key labels live in their own table; these read and write them for one key or many. */
import type { ExpressionBuilder, Kysely, Transaction } from 'kysely';
import type { Database } from '../store/index.js';

type Executor = Kysely<Database> | Transaction<Database>;

/** Labels by key id; keys without labels are absent from the map. */
export async function readLabels(db: Executor, ids: readonly string[]): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>();
  if (ids.length === 0) return out;
  const rows = await db.selectFrom('key_labels').selectAll().where('key_id', 'in', ids).orderBy('name').execute();
  for (const row of rows) {
    const labels = out.get(row.key_id) ?? {};
    labels[row.name] = row.value;
    out.set(row.key_id, labels);
  }
  return out;
}

/** 3 columns a row: 1,000 rows stay under both dialects' bound-parameter limits. */
const LABEL_INSERT_CHUNK = 1_000;

/** Writes labels for one key or many (key id, labels) pairs. */
export async function writeLabels(trx: Transaction<Database>, entries: ReadonlyArray<readonly [string, Readonly<Record<string, string>>]>): Promise<void> {
  const rows = entries.flatMap(([keyId, labels]) => Object.entries(labels).map(([name, value]) => ({ key_id: keyId, name, value })));
  for (let start = 0; start < rows.length; start += LABEL_INSERT_CHUNK) {
    await trx.insertInto('key_labels').values(rows.slice(start, start + LABEL_INSERT_CHUNK)).execute();
  }
}

/** A filter for a query on api_keys: the key carries label `name` with one of `values`. */
export function labelIn(name: string, values: readonly string[]) {
  return ({ exists, selectFrom }: ExpressionBuilder<Database, 'api_keys'>) =>
    exists(
      selectFrom('key_labels')
        .select('key_labels.key_id')
        .whereRef('key_labels.key_id', '=', 'api_keys.id')
        .where('key_labels.name', '=', name)
        .where('key_labels.value', 'in', values),
    );
}
