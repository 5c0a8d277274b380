import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";

/** A request body or parameter a client got wrong; becomes a 400 or 413. */
export class RestInputError extends Error {
  override readonly name = "RestInputError";

  constructor(
    message: string,
    readonly status = 400,
    /** Extra response headers, such as `allow` on a 405. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * Reads the whole body, refusing more than `limit` bytes as soon as they
 * arrive rather than after buffering them.
 */
export async function readBody(
  request: IncomingMessage | Http2ServerRequest,
  limit: number,
): Promise<Buffer> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > limit) {
    throw tooLarge(limit);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      throw tooLarge(limit);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Merges the parameters of a request as privacyIDEA does: the query string,
 * then a form or JSON body on top (a body wins over the query). JSON numbers
 * and booleans become the strings privacyIDEA would store ("443", "True").
 */
export function parseParams(
  query: URLSearchParams,
  contentType: string | undefined,
  body: Buffer,
): Map<string, string> {
  const params = new Map<string, string>();
  for (const [key, value] of query) {
    if (!params.has(key)) {
      params.set(key, value);
    }
  }
  if (body.length === 0) {
    return params;
  }
  const mediaType = (contentType ?? "").split(";")[0]?.trim().toLowerCase();
  if (mediaType === "application/json" || mediaType?.endsWith("+json")) {
    for (const [key, value] of jsonParams(body)) {
      params.set(key, value);
    }
  } else if (mediaType === "application/x-www-form-urlencoded") {
    const seen = new Set<string>();
    for (const [key, value] of new URLSearchParams(body.toString("utf8"))) {
      if (!seen.has(key)) {
        seen.add(key);
        params.set(key, value);
      }
    }
  } else {
    throw new RestInputError(
      "the body must be application/json or application/x-www-form-urlencoded",
    );
  }
  return params;
}

function jsonParams(body: Buffer): Map<string, string> {
  let document: unknown;
  try {
    document = JSON.parse(body.toString("utf8"));
  } catch {
    throw new RestInputError("the body is not valid JSON");
  }
  if (
    typeof document !== "object" ||
    document === null ||
    Array.isArray(document)
  ) {
    throw new RestInputError("the JSON body must be an object");
  }
  const params = new Map<string, string>();
  for (const [key, value] of Object.entries(document)) {
    params.set(key, jsonValue(key, value));
  }
  return params;
}

function jsonValue(key: string, value: unknown): string {
  switch (typeof value) {
    case "string":
      return value;
    case "number":
      return String(value);
    case "boolean":
      return value ? "True" : "False";
    default:
      throw new RestInputError(
        `parameter ${key} must be a string, number or boolean`,
      );
  }
}

function tooLarge(limit: number): RestInputError {
  return new RestInputError(`the body is larger than ${limit} bytes`, 413);
}
