import { Code, type Interceptor } from "@connectrpc/connect";
import { toConnectError } from "../domain/errors.js";
import type { Logger } from "../logger.js";
import type { RequestObserver, RequestProtocol } from "../ops/metrics.js";
import { adminKey, requestIdKey } from "./context-keys.js";

export { requestIdKey } from "./context-keys.js";

/**
 * Logs one line per RPC, counts it in the request metrics, and turns every
 * error into the ConnectError the client may see. It is the outermost
 * interceptor, so errors from any other interceptor pass through its mapping
 * too.
 */
export function requestLogInterceptor(
  logger: Logger,
  observe?: RequestObserver,
): Interceptor {
  const log = logger.child({ component: "rpc" });
  return (next) => async (request) => {
    const started = performance.now();
    const procedure = `${request.service.typeName}/${request.method.name}`;
    const finish = (code: string) => {
      const durationMs = elapsed(started);
      observe?.({
        protocol: protocolOf(request.header.get("content-type")),
        procedure,
        code,
        seconds: durationMs / 1000,
      });
      return {
        procedure,
        code,
        durationMs,
        admin: request.contextValues.get(adminKey)?.username,
        requestId: request.contextValues.get(requestIdKey),
      };
    };
    const fail = (err: unknown) => {
      const error = toConnectError(err);
      const line = finish(Code[error.code]);
      if (error.code === Code.Internal || error.code === Code.Unavailable) {
        log.error({ ...line, err: error.cause ?? err }, "request failed");
      } else {
        log.info(line, "request");
      }
      return error;
    };
    try {
      const response = await next(request);
      if (!response.stream) {
        log.info(finish("ok"), "request");
        return response;
      }
      // A stream is done when its messages are, not when it starts.
      const messages = response.message;
      return {
        ...response,
        message: (async function* () {
          let code = "Canceled";
          try {
            yield* messages;
            code = "ok";
          } catch (err) {
            code = "";
            throw fail(err);
          } finally {
            if (code !== "") {
              log.info(finish(code), "request");
            }
          }
        })(),
      };
    } catch (err) {
      throw fail(err);
    }
  };
}

/**
 * The protocol of an RPC by its content type; Connect GET requests carry
 * none and are Connect.
 */
function protocolOf(contentType: string | null): RequestProtocol {
  if (contentType?.startsWith("application/grpc-web")) {
    return "grpc-web";
  }
  if (contentType?.startsWith("application/grpc")) {
    return "grpc";
  }
  return "connect";
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 1000) / 1000;
}
