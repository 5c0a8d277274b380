import { Code, type ConnectError } from "@connectrpc/connect";
import { AuthError } from "../auth/errors.js";
import { toConnectError } from "../domain/errors.js";
import { StoreUnavailableError } from "../store/errors.js";
import type { RestError } from "./envelope.js";
import { RestInputError } from "./params.js";

/** The text of a 500 answer; the cause goes to the log only. */
export const restInternalMessage = "Internal error. Please see the server log.";

/** Which operation failed, since privacyIDEA numbers some errors per route. */
export type RestOperation = "list" | "specific" | "save" | "delete";

/**
 * Maps any error of a REST request to privacyIDEA's status, error number
 * and message. Authentication texts are privacyIDEA's own, so that clients
 * matching on them keep working.
 */
export function toRestError(err: unknown, operation: RestOperation): RestError {
  if (err instanceof AuthError) {
    return authError(err);
  }
  if (err instanceof RestInputError) {
    return {
      status: err.status,
      code: 905,
      message: `ERR905: ${err.message}`,
      headers: err.headers,
    };
  }
  const error = toConnectError(err);
  const message = error.rawMessage;
  if (isCaProblem(error, operation)) {
    return { status: 400, code: 503, message: `ERR503: ${message}` };
  }
  switch (error.code) {
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.AlreadyExists:
      return { status: 400, code: 905, message: `ERR905: ${message}` };
    case Code.Aborted:
      return { status: 409, code: 905, message: `ERR905: ${message}` };
    case Code.NotFound:
      return {
        status: 404,
        code: 601,
        message: "The requested CAConnector could not be found.",
      };
    case Code.Unavailable:
      return { status: 503, code: 902, message: `ERR902: ${message}` };
    default:
      return { status: 500, code: -500, message: restInternalMessage };
  }
}

function authError(err: AuthError): RestError {
  const reason = err.message.replace(/^authentication failure: [^:]*: ?/, "");
  switch (err.failure) {
    case "missing":
      return {
        status: 401,
        code: 4033,
        message: "Authentication failure. Missing Authorization header.",
      };
    case "malformed":
      return {
        status: 401,
        code: 4304,
        message: `Authentication failure. Error decoding the Authorization token: ${reason}`,
      };
    case "expired":
      return {
        status: 401,
        code: 4305,
        message:
          "Authentication failure. Your token has expired: Signature has expired",
      };
    case "role":
      return {
        status: 401,
        code: 4306,
        message:
          "Authentication failure. You do not have the necessary role (['admin']) to access this resource!",
      };
    default:
      return {
        status: 403,
        code: 303,
        message: `Admin actions are defined, but the action ${err.action ?? "(none)"} is not allowed!`,
      };
  }
}

/**
 * Whether a failure lies with the CA side, which privacyIDEA reports as its
 * CA error 503: on specific options a setting the CA needs, an unreadable
 * TLS file, a wrong key password or an unreachable worker; on a save (with
 * `validate_only`, the only save that calls a worker) an unreachable one.
 * An unavailable store keeps its own 503/902.
 */
function isCaProblem(error: ConnectError, operation: RestOperation): boolean {
  const unreachable =
    error.code === Code.Unavailable &&
    !(error.cause instanceof StoreUnavailableError);
  switch (operation) {
    case "specific":
      return unreachable || error.code === Code.FailedPrecondition;
    case "save":
      return unreachable;
    default:
      return false;
  }
}
