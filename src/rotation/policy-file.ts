/**
 * Policy files: YAML with one top-level list, `policies: [ … ]`. Every problem, a syntax error
 * included, names the line and column of the node it is about (for a field, the line of its
 * key), so `keysmith rotation plan` can print `FILE:LINE:COL message` as compilers do.
 */
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import { createPolicyValidator, type ConnectorSettingsCheck, type PolicyLimits, type PolicyPath, type RotationPolicy } from './policy.js';

export interface FileProblem {
  readonly line: number;
  readonly column: number;
  readonly message: string;
}

export type PolicyFileResult =
  | { readonly ok: true; readonly policies: RotationPolicy[] }
  | { readonly ok: false; readonly problems: FileProblem[] };

/** Policy files are small; a larger one is a mistake (or an attack on the parser). */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024;
const MAX_POLICIES = 1000;

export function parsePolicyFile(text: string, limits: PolicyLimits, connectors?: ConnectorSettingsCheck): PolicyFileResult {
  if (Buffer.byteLength(text) > MAX_POLICY_FILE_BYTES) return refused({ line: 1, column: 1, message: `the file is larger than ${MAX_POLICY_FILE_BYTES} bytes` });
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  const at = (offset: number | undefined) => lineCounter.linePos(offset ?? 0);
  if (doc.errors.length > 0) {
    return { ok: false, problems: doc.errors.map((error) => ({ ...position(at, error.pos[0]), message: firstLine(error.message) })) };
  }
  const root = doc.contents;
  if (!isMap(root)) return refused({ ...position(at, root), message: 'the file must be a map with a "policies" list' });
  const problems: FileProblem[] = [];
  for (const pair of root.items) {
    const name = isScalar(pair.key) ? String(pair.key.value) : '';
    if (name !== 'policies') problems.push({ ...position(at, pair.key as Node | null), message: `unknown top-level field "${name.slice(0, 60)}"; the file holds "policies" only` });
  }
  const list = root.get('policies', true) as Node | undefined;
  if (!isSeq(list)) problems.push({ ...position(at, list ?? root), message: '"policies" must be a list of policies' });
  if (problems.length > 0) return { ok: false, problems };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    return refused({ line: 1, column: 1, message: firstLine((error as Error).message) });
  }
  const inputs = (value as { policies: unknown[] }).policies;
  if (inputs.length > MAX_POLICIES) return refused({ ...position(at, list as Node), message: `at most ${MAX_POLICIES} policies in one file` });
  const checked = createPolicyValidator(limits, connectors).checkAll(inputs);
  if (checked.problems.length === 0) return { ok: true, policies: checked.policies };
  return {
    ok: false,
    problems: checked.problems.map((problem) => ({ ...position(at, nodeAt(doc, ['policies', ...problem.path])), message: problem.message })),
  };
}

function refused(problem: FileProblem): PolicyFileResult {
  return { ok: false, problems: [problem] };
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}

type Locate = (offset: number | undefined) => { line: number; col: number };

/** Line and column of a node, or of an offset. */
function position(at: Locate, where: Node | null | undefined | number): { line: number; column: number } {
  const { line, col } = at(typeof where === 'number' ? where : where?.range?.[0]);
  return { line, column: col };
}

/**
 * The node a problem path points at: for a field, its key (where a reader looks); when the
 * path runs past what the file has (a missing field), the deepest node that exists.
 */
function nodeAt(doc: Document, path: PolicyPath): Node | null {
  let node: Node | null = doc.contents;
  for (const [index, part] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(part));
      if (!pair) return node;
      if (index === path.length - 1) return pair.key as Node;
      node = pair.value as Node | null;
    } else if (isSeq(node) && typeof part === 'number' && node.items[part] !== undefined) {
      node = node.items[part] as Node;
    } else {
      return node;
    }
  }
  return node;
}
