import { Code, type Interceptor } from "@connectrpc/connect";
import { toConnectError } from "../domain/errors.js";
import type { Logger } from "../logger.js";
import { adminKey } from "./auth-interceptor.js";

/**
 * Logs one line per RPC and turns every error into the ConnectError the
 * client may see. It is the outermost interceptor, so errors from any other
 * interceptor pass through its mapping too.
 */
export function requestLogInterceptor(logger: Logger): Interceptor {
  const log = logger.child({ component: "rpc" });
  return (next) => async (request) => {
    const started = performance.now();
    const procedure = `${request.service.typeName}/${request.method.name}`;
    try {
      const response = await next(request);
      log.info(
        {
          procedure,
          code: "ok",
          durationMs: elapsed(started),
          admin: request.contextValues.get(adminKey)?.username,
        },
        "request",
      );
      return response;
    } catch (err) {
      const error = toConnectError(err);
      const line = {
        procedure,
        code: Code[error.code],
        durationMs: elapsed(started),
        admin: request.contextValues.get(adminKey)?.username,
      };
      if (error.code === Code.Internal || error.code === Code.Unavailable) {
        log.error({ ...line, err: error.cause ?? err }, "request failed");
      } else {
        log.info(line, "request");
      }
      throw error;
    }
  };
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 1000) / 1000;
}
