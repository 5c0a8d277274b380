import { type DescMethod, getOption } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, createContextKey, type Interceptor } from "@connectrpc/connect";
import { policy_action } from "../../gen/caconnector/v1/caconnector_pb.js";
import type { Attempt, Authorizer } from "../auth/authorizer.js";
import { AuthError } from "../auth/errors.js";
import type { Admin } from "../auth/tokens.js";
import { toConnectError } from "../domain/errors.js";

/** The authenticated admin of an RPC, for handlers and the request log. */
export const adminKey = createContextKey<Admin | undefined>(undefined, {
  description: "authenticated admin",
});

/**
 * Authorizes every RPC before its handler runs, with the policy action the
 * method declares in the proto (`caconnector.v1.policy_action`). A method
 * without one is refused, so a new RPC cannot ship unguarded.
 */
export function authInterceptor(authorizer: Authorizer): Interceptor {
  return (next) => async (request) => {
    const attempt = attemptOf(
      request.method,
      request.stream ? undefined : request.message,
    );
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

/** What an RPC attempts, read from its descriptor and request. */
export function attemptOf(method: DescMethod, message: unknown): Attempt {
  const name =
    typeof message === "object" && message !== null && "name" in message
      ? message.name
      : undefined;
  return {
    action: getOption(method, policy_action),
    connector: typeof name === "string" && name !== "" ? name : undefined,
    write:
      method.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS,
  };
}
