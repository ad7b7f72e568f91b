/**
 * The OpenAPI document names routes as users call them: `/v1/secrets/{path}/versions`, not the
 * internal `/v1/secret-actions/versions/{*}` that URL rewriting routes them to.
 */
const ACTION_ROUTE = /^\/v1\/secret-actions\/([a-z]+)\/\{\*\}$/;

type Operation = { parameters?: Array<{ name?: string; in?: string; description?: string }> } & Record<string, unknown>;
type PathItem = Record<string, Operation>;
interface OpenApiDocument {
  readonly paths?: object;
}

export function publicOpenApi<T extends OpenApiDocument>(doc: T): T {
  if (doc.paths === undefined) return doc;
  const paths: Record<string, PathItem> = {};
  for (const [url, item] of Object.entries(doc.paths as Record<string, PathItem>)) {
    const action = ACTION_ROUTE.exec(url)?.[1];
    const renamed = action !== undefined ? `/v1/secrets/{path}/${action}` : url.replace('/{*}', '/{path}');
    paths[renamed] = renamed === url ? item : renamePathParameter(item);
  }
  return { ...doc, paths };
}

function renamePathParameter(item: PathItem): PathItem {
  const out: PathItem = {};
  for (const [method, operation] of Object.entries(item)) {
    out[method] = {
      ...operation,
      ...(operation.parameters
        ? {
            parameters: operation.parameters.map((p) =>
              p.in === 'path' && p.name === '*' ? { ...p, name: 'path', description: 'The secret path, e.g. payments/stripe/api-key' } : p,
            ),
          }
        : {}),
    };
  }
  return out;
}
