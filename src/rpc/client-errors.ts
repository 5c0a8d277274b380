import type {
  UniversalHandler,
  UniversalServerRequest,
  UniversalServerResponse,
} from "@connectrpc/connect/protocol";

/**
 * What Connect-ES 2.1 answers, with INTERNAL, to a request body it cannot
 * read. It parses the body before any interceptor runs, so no handler or
 * interceptor of ours ever sees these errors to map them.
 */
const parseBinaryPrefix = "parse binary: ";
const unreadableBodies = new Set([
  // A message flagged compressed in a request that named no encoding.
  "received compressed envelope, but do not know how to decompress",
  // A compressed body cut short (zlib's Z_BUF_ERROR); a corrupt one
  // already gets INVALID_ARGUMENT from Connect-ES.
  "decompression failed",
]);

/**
 * Whether an INTERNAL error message is one Connect-ES gives to a request
 * body it could not read. "protocol error: …" is left out on purpose: every
 * such error a server raises already has a client code, and those with
 * INTERNAL come from a Connect client, which would be a real failure.
 */
export function isUnreadableRequest(message: string): boolean {
  return message.startsWith(parseBinaryPrefix) || unreadableBodies.has(message);
}

const grpcInternal = "13";
const grpcInvalidArgument = "3";
const flagConnectEndStream = 0b0000_0010;
const flagGrpcWebTrailer = 0b1000_0000;

/**
 * Wraps a Connect-ES handler so that a request body that does not decode
 * (bad protobuf bytes, broken gRPC framing) is answered INVALID_ARGUMENT,
 * not INTERNAL. Connect-ES maps these to INTERNAL, and so does grpc-go, but
 * SPEC §2 keeps INTERNAL for our own failures: these are the caller's.
 * The parser's text stays as the message; it holds no secret.
 *
 * Only an INTERNAL whose message `isUnreadableRequest` matches is changed,
 * never one a handler raised: ours say "internal error", and no handler
 * calls a Connect client, which could raise "parse binary: …" itself. A
 * success costs a content-type check, and on the streamed protocols a
 * flag check per chunk.
 */
export function answerClientMistakes(
  handler: UniversalHandler,
): UniversalHandler {
  const answer = async (request: UniversalServerRequest) => {
    let response: UniversalServerResponse;
    try {
      response = await handler(request);
    } catch (err) {
      const undecodable = undecodableAnswer(handler, request, err);
      if (undecodable === undefined) {
        throw err;
      }
      return undecodable;
    }
    return rewrite(response);
  };
  return Object.assign(answer, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

/**
 * The gRPC or gRPC-Web answer to a request whose body Connect-ES could not
 * decode and whose decoding error it then could not send. V8 names the
 * token that breaks a JSON text by its first UTF-16 unit, so JSON that
 * starts with an astral character yields a message with a lone surrogate,
 * and Connect-ES throws a URIError percent-encoding it as `grpc-message`,
 * leaving the stream unanswered. The answer is INVALID_ARGUMENT, in the
 * headers alone for gRPC (trailers-only) and in a trailer frame for
 * gRPC-Web; the message names the request message, not the text that broke.
 * Errors of handlers never get here: the outermost interceptor replaces lone
 * surrogates in their messages (`toConnectError`).
 */
function undecodableAnswer(
  handler: UniversalHandler,
  request: UniversalServerRequest,
  err: unknown,
): UniversalServerResponse | undefined {
  const type = request.header.get("content-type") ?? "";
  if (!(err instanceof URIError) || !type.startsWith("application/grpc")) {
    return undefined;
  }
  const message = encodeURIComponent(
    `cannot decode message ${handler.method.input.typeName} from the request body`,
  );
  if (type.startsWith("application/grpc-web")) {
    // gRPC-Web clients read the status from a trailer frame in the body.
    const trailer = `grpc-status: ${grpcInvalidArgument}\r\ngrpc-message: ${message}\r\n`;
    return {
      status: 200,
      header: new Headers({ "content-type": type }),
      body: single(envelope(flagGrpcWebTrailer, trailer)),
    };
  }
  return {
    status: 200,
    header: new Headers({
      "content-type": type,
      "grpc-status": grpcInvalidArgument,
      "grpc-message": message,
    }),
  };
}

function rewrite(
  response: UniversalServerResponse,
): UniversalServerResponse | Promise<UniversalServerResponse> {
  const { body, header } = response;
  if (body === undefined || header === undefined) {
    return response;
  }
  const type = header.get("content-type") ?? "";
  if (response.status === 500) {
    // A Connect unary error: JSON, alone in the body.
    const plain =
      type === "application/json" && !header.has("content-encoding");
    return plain ? rewriteUnaryError(response, body, header) : response;
  }
  if (response.status !== 200) {
    return response;
  }
  if (type.startsWith("application/grpc-web")) {
    return { ...response, body: mapChunks(body, fixWebTrailer) };
  }
  if (type.startsWith("application/grpc")) {
    // The status goes in the trailer, filled in when the body has ended
    // and written by the node adapter after that.
    const trailer = response.trailer;
    if (trailer === undefined) {
      return response;
    }
    return {
      ...response,
      body: mapChunks(body, undefined, () => fixGrpcTrailer(trailer)),
    };
  }
  if (type.startsWith("application/connect+")) {
    return { ...response, body: mapChunks(body, fixEndStream) };
  }
  return response;
}

async function rewriteUnaryError(
  response: UniversalServerResponse,
  body: AsyncIterable<Uint8Array>,
  header: Headers,
): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) {
    chunks.push(chunk);
  }
  const bytes = Buffer.concat(chunks);
  const fixed = fixErrorJson(bytes);
  if (fixed === undefined) {
    return { ...response, body: single(bytes) };
  }
  header.set("content-length", String(fixed.byteLength));
  return { ...response, status: 400, body: single(fixed) };
}

/** The error JSON with `invalid_argument`, or undefined to leave it. */
function fixErrorJson(bytes: Uint8Array): Uint8Array | undefined {
  const error = parseJson(bytes);
  if (!isUnreadableRequestError(error)) {
    return undefined;
  }
  const fixed = { ...error, code: "invalid_argument" };
  return new TextEncoder().encode(JSON.stringify(fixed));
}

/** Whether a Connect error JSON reports an unreadable request. */
function isUnreadableRequestError(
  error: unknown,
): error is Record<string, unknown> {
  if (typeof error !== "object" || error === null) {
    return false;
  }
  const { code, message } = error as Record<string, unknown>;
  return (
    code === "internal" &&
    typeof message === "string" &&
    isUnreadableRequest(message)
  );
}

function fixGrpcTrailer(trailer: Headers): void {
  if (trailer.get("grpc-status") !== grpcInternal) {
    return;
  }
  const message = percentDecode(trailer.get("grpc-message") ?? "");
  if (isUnreadableRequest(message)) {
    trailer.set("grpc-status", grpcInvalidArgument);
  }
}

/**
 * Fixes the status in a gRPC-Web trailer, the last envelope of the body.
 * NOTE: Connect-ES yields each envelope as one chunk; a compressed trailer
 * (only ever one over 1 KiB) is left as it is.
 */
function fixWebTrailer(chunk: Uint8Array): Uint8Array {
  const data = envelopeData(chunk, flagGrpcWebTrailer);
  if (data === undefined) {
    return chunk;
  }
  const lines = new TextDecoder().decode(data).split("\r\n");
  const field = (name: string) =>
    lines.find((line) => line.startsWith(`${name}: `))?.slice(name.length + 2);
  const unreadable =
    field("grpc-status") === grpcInternal &&
    isUnreadableRequest(percentDecode(field("grpc-message") ?? ""));
  if (!unreadable) {
    return chunk;
  }
  const fixed = lines.map((line) =>
    line.startsWith("grpc-status: ")
      ? `grpc-status: ${grpcInvalidArgument}`
      : line,
  );
  return envelope(flagGrpcWebTrailer, fixed.join("\r\n"));
}

/** Fixes the error in a Connect stream's end message, its last envelope. */
function fixEndStream(chunk: Uint8Array): Uint8Array {
  const data = envelopeData(chunk, flagConnectEndStream);
  if (data === undefined) {
    return chunk;
  }
  const end = parseJson(data);
  if (typeof end !== "object" || end === null) {
    return chunk;
  }
  const { error } = end as { error?: unknown };
  if (!isUnreadableRequestError(error)) {
    return chunk;
  }
  const fixed = { ...end, error: { ...error, code: "invalid_argument" } };
  return envelope(flagConnectEndStream, JSON.stringify(fixed));
}

/**
 * The payload of a chunk that is exactly one uncompressed envelope with
 * `flags`, or undefined for any other chunk.
 */
function envelopeData(
  chunk: Uint8Array,
  flags: number,
): Uint8Array | undefined {
  // A compressed envelope has another flag byte and is passed over.
  if (chunk.byteLength < 5 || chunk[0] !== flags) {
    return undefined;
  }
  const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (view.getUint32(1) !== chunk.byteLength - 5) {
    return undefined;
  }
  return chunk.subarray(5);
}

function envelope(flags: number, text: string): Uint8Array {
  const data = new TextEncoder().encode(text);
  const bytes = new Uint8Array(5 + data.byteLength);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, flags);
  view.setUint32(1, data.byteLength);
  bytes.set(data, 5);
  return bytes;
}

/**
 * The body with `map` applied to each chunk and `onEnd` called when it has
 * ended. `throw` and `return` reach the original, which the node adapter
 * uses to tell the handler of a failed write.
 */
function mapChunks(
  body: AsyncIterable<Uint8Array>,
  map?: (chunk: Uint8Array) => Uint8Array,
  onEnd?: () => void,
): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      const it = body[Symbol.asyncIterator]();
      return {
        async next() {
          const result = await it.next();
          if (result.done === true) {
            onEnd?.();
            return result;
          }
          return map ? { done: false, value: map(result.value) } : result;
        },
        throw: (reason?: unknown) =>
          it.throw ? it.throw(reason) : Promise.reject(reason),
        return: (value?: unknown) =>
          it.return
            ? it.return(value)
            : Promise.resolve({ done: true as const, value }),
      };
    },
  };
}

async function* single(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
}

function percentDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
