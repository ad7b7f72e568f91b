/**
 * The one place errors become HTTP: RFC 9457 problem+json with a stable `code` category and
 * `error` registry code. Framework errors (bad JSON, wrong media type, oversized body, schema
 * failures) are mapped to the same registry; anything unexpected is a bare 500 whose body says
 * nothing about internals.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { redactKeys } from '../../shared/redact.js';
import { AppError, ERROR_REGISTRY, isAppError, type ErrorCode, type ErrorDetail } from '../../shared/errors.js';

export function problemBody(error: AppError, request: FastifyRequest): Record<string, unknown> {
  const body: Record<string, unknown> = {
    type: `https://keysmith.dev/errors/${error.code.toLowerCase().replace(/^err_/, '').replace(/_/g, '-')}`,
    title: error.title,
    status: error.status,
    detail: error.message,
    code: error.category,
    error: error.code,
    instance: redactKeys(request.originalUrl.split('?')[0] ?? ''),
    requestId: request.id,
  };
  if (error.details.length > 0) body.errors = error.details;
  return body;
}

export function sendProblem(reply: FastifyReply, error: AppError): FastifyReply {
  return reply
    .code(error.status)
    .header('x-request-id', reply.request.id)
    .header('content-type', 'application/problem+json; charset=utf-8')
    .serializer(JSON.stringify)
    .send(problemBody(error, reply.request));
}

/** Translates a framework or validation error into an AppError; undefined if unexpected. */
export function toAppError(error: FastifyError): AppError | undefined {
  if (isAppError(error)) return error;
  if (error.validation) {
    const details: ErrorDetail[] = error.validation.slice(0, 10).map((issue) => {
      const path = issue.instancePath.replace(/^\//, '').replace(/\//g, '.');
      const params = issue.params as Record<string, unknown>;
      const field = issue.keyword === 'additionalProperties' ? [path, params.additionalProperty].filter(Boolean).join('.') : path || (params.missingProperty as string | undefined) || undefined;
      return { ...(field ? { field } : {}), message: describe(issue.keyword, params, issue.message) };
    });
    const first = details[0];
    if (first && !first.field && error.validationContext === 'body' && error.validation[0]?.keyword === 'type') {
      return new AppError('ERR_INVALID_REQUEST', 'the request body must be a JSON object', { details });
    }
    const where = error.validationContext === 'querystring' ? 'query parameter' : error.validationContext === 'params' ? 'path parameter' : 'field';
    const message = first ? `${first.field ? `${where} "${first.field}" ` : ''}${first.message}` : 'the request is not valid';
    return new AppError('ERR_INVALID_REQUEST', message, { details });
  }
  const code = mapFrameworkCode(error.code);
  if (code) return new AppError(code, frameworkMessage(code, error));
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    return new AppError('ERR_INVALID_REQUEST', 'the request is not valid');
  }
  return undefined;
}

function describe(keyword: string, params: Record<string, unknown>, fallback: string | undefined): string {
  switch (keyword) {
    case 'additionalProperties':
      return `is not a known field; remove "${String(params.additionalProperty)}"`;
    case 'required':
      return `is required: add "${String(params.missingProperty)}"`;
    case 'maxLength':
      return `is too long (at most ${String(params.limit)} characters)`;
    case 'minLength':
      return `is too short (at least ${String(params.limit)} characters)`;
    case 'pattern':
      return 'has characters that are not allowed (control characters, or not the expected form)';
    case 'type':
      return `must be ${String(params.type)}`;
    case 'maxItems':
      return `has too many items (at most ${String(params.limit)})`;
    case 'maxProperties':
      return `has too many entries (at most ${String(params.limit)})`;
    case 'minProperties':
      return 'must name at least one field to change';
    case 'enum':
    case 'const':
    case 'anyOf':
      return 'is not one of the allowed values';
    default:
      return fallback ?? 'is not valid';
  }
}

function mapFrameworkCode(code: string | undefined): ErrorCode | undefined {
  switch (code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'ERR_UNSUPPORTED_MEDIA_TYPE' : 'ERR_INVALID_REQUEST';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'ERR_PAYLOAD_TOO_LARGE';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return 'ERR_INVALID_JSON';
    default:
      return undefined;
  }
}

function frameworkMessage(code: ErrorCode, error: FastifyError): string {
  switch (code) {
    case 'ERR_UNSUPPORTED_MEDIA_TYPE':
      return 'send the body as JSON with content-type: application/json';
    case 'ERR_PAYLOAD_TOO_LARGE':
      return 'the request body is larger than 1 MiB';
    case 'ERR_INVALID_JSON':
      return error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY'
        ? 'the body is empty but content-type is application/json; send a JSON object or no content-type'
        : 'the request body is not valid JSON; check quotes, commas and brackets';
    default:
      return ERROR_REGISTRY[code].title;
  }
}

/** `onProblem` sees every problem response (the metrics count them there). */
export function registerProblemHandling(app: FastifyInstance, onProblem: (request: FastifyRequest, status: number) => void = () => undefined): void {
  const send = (reply: FastifyReply, error: AppError) => {
    onProblem(reply.request, error.status);
    return sendProblem(reply, error);
  };
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const appError = toAppError(error);
    if (appError) return send(reply, appError);
    // Unexpected: log it (the logger redacts secrets) and answer without internals.
    request.log.error({ err: error }, 'unhandled error');
    return send(reply, new AppError('ERR_INTERNAL', 'an internal error occurred; the request id identifies it in the server log'));
  });
  app.setNotFoundHandler((request, reply) =>
    send(reply, new AppError('ERR_ROUTE_NOT_FOUND', `no route ${request.method} ${redactKeys(request.url.split('?')[0] ?? '')}; see /openapi.json`)),
  );
}
