import type { IncomingMessage, ServerResponse } from "node:http";
import {
  constants,
  type Http2ServerRequest,
  Http2ServerResponse,
} from "node:http2";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ConnectRouterOptions,
  type ContextValues,
  createConnectRouter,
} from "@connectrpc/connect";
import type {
  UniversalHandler,
  UniversalServerRequest,
} from "@connectrpc/connect/protocol";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { Logger } from "../logger.js";
import type { NodeHandler } from "../server/http-server.js";
import { answerClientMistakes } from "./client-errors.js";

/** What the RPC handler serves and how. */
export interface RpcHandlerOptions extends ConnectRouterOptions {
  routes: (router: ConnectRouter) => void;
  contextValues: (
    request: IncomingMessage | Http2ServerRequest,
  ) => ContextValues;
  logger: Logger;
}

/**
 * Serves Connect, gRPC and gRPC-Web as `connectNodeAdapter` does (gzip and
 * brotli, 404 for an unknown path, query ignored), with every handler
 * wrapped by `answerClientMistakes`, which the adapter has no place for.
 * Unlike the adapter, it answers 400 to a request without an authority
 * instead of throwing, and logs a failed response instead of printing it.
 */
export function rpcNodeHandler(options: RpcHandlerOptions): NodeHandler {
  const { routes, contextValues, logger, ...routerOptions } = options;
  const router = createConnectRouter({
    acceptCompression: [compressionGzip, compressionBrotli],
    ...routerOptions,
  });
  routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const handler of router.handlers) {
    paths.set(handler.requestPath, answerClientMistakes(handler));
  }
  const log = logger.child({ component: "rpc" });

  return (request, response) => {
    const handler = paths.get(request.url?.split("?", 2)[0] ?? "");
    if (handler === undefined) {
      response.writeHead(404);
      response.end();
      return;
    }
    let universal: UniversalServerRequest;
    try {
      universal = universalRequestFromNodeRequest(
        request,
        response,
        undefined,
        contextValues(request),
      );
    } catch {
      // NOTE: Connect-ES throws for a request with neither Host nor
      // :authority (HTTP/1.0 allows that); thrown from Node's request
      // event, it would end the process.
      response.writeHead(400);
      response.end();
      return;
    }
    handler(universal)
      .then((answer) => universalResponseToNodeResponse(answer, response))
      .catch((err: unknown) => {
        // A client that went away aborts its call; nothing is wrong.
        if (ConnectError.from(err).code !== Code.Aborted) {
          const procedure = `${handler.service.typeName}/${handler.method.name}`;
          log.error({ procedure, err }, "rpc response failed");
        }
        endUnanswered(response);
      });
  };
}

/**
 * Ends a response that failed on its way out, so that no client waits on
 * it for ever: a 500 if nothing was sent yet, else a reset stream (HTTP/2)
 * or a closed connection (HTTP/1.1), which tells the client the answer is
 * incomplete.
 */
function endUnanswered(response: ServerResponse | Http2ServerResponse): void {
  const gone =
    response instanceof Http2ServerResponse
      ? response.stream.destroyed
      : response.destroyed;
  if (gone || response.writableEnded) {
    return;
  }
  if (!response.headersSent) {
    response.writeHead(500);
    response.end();
  } else if (response instanceof Http2ServerResponse) {
    response.stream.close(constants.NGHTTP2_INTERNAL_ERROR);
  } else {
    response.destroy();
  }
}
