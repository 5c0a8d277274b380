import { Code, type Interceptor } from "@connectrpc/connect";
import { attemptOf } from "../auth/attempt.js";
import type { Authorizer } from "../auth/authorizer.js";
import { AuthError } from "../auth/errors.js";
import type { Admin } from "../auth/tokens.js";
import { toConnectError } from "../domain/errors.js";
import { adminKey, requestIdKey } from "./context-keys.js";

/**
 * Authorizes every RPC before its handler runs, with the policy action the
 * method declares in the proto (`caconnector.v1.policy_action`). A method
 * without one is refused, so a new RPC cannot ship unguarded; only whole
 * services named public are let through without a token.
 */
export function authInterceptor(
  authorizer: Authorizer,
  /** Services open to anyone, such as health checking. */
  publicServices: readonly string[] = [],
): Interceptor {
  const open = new Set(publicServices);
  return (next) => async (request) => {
    if (open.has(request.service.typeName)) {
      return next(request);
    }
    const attempt = {
      ...attemptOf(
        request.method,
        request.stream ? undefined : request.message,
      ),
      requestId: request.contextValues.get(requestIdKey),
    };
    let admin: Admin;
    try {
      admin = await authorizer.authorize(request.header, attempt);
    } catch (err) {
      throw err instanceof AuthError ? err.toConnectError() : err;
    }
    request.contextValues.set(adminKey, admin);
    if (!attempt.write) {
      return next(request);
    }
    try {
      const response = await next(request);
      authorizer.recordWrite(admin, attempt, "ok");
      return response;
    } catch (err) {
      authorizer.recordWrite(admin, attempt, Code[toConnectError(err).code]);
      throw err;
    }
  };
}
