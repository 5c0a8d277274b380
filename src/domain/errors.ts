import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { FieldViolation } from "../plugins/plugin.js";
import { SecretDecryptError } from "../secrets/secret-box.js";
import { StoreUnavailableError } from "../store/errors.js";

/**
 * An INVALID_ARGUMENT error whose message names every field at fault and
 * whose details carry them as a `google.rpc.BadRequest`.
 */
export function invalidArgument(violations: FieldViolation[]): ConnectError {
  return fieldError(Code.InvalidArgument, violations);
}

/** A ConnectError of any code that names the fields at fault. */
export function fieldError(
  code: Code,
  violations: FieldViolation[],
  cause?: unknown,
): ConnectError {
  const message = violations
    .map((violation) => `${violation.field}: ${violation.description}`)
    .join("; ");
  const detail = create(BadRequestSchema, {
    fieldViolations: violations.map((violation) => ({
      field: violation.field,
      description: violation.description,
    })),
  });
  return new ConnectError(
    message,
    code,
    undefined,
    [{ desc: BadRequestSchema, value: detail }],
    cause,
  );
}

/**
 * Why a stored secret blocks a request: no configured key opens it, either
 * because its key was removed or because it fails authentication. It names
 * the field only, never a key id, key or secret.
 */
export function undecryptableSecret(field: string): FieldViolation {
  return {
    field: `config.${field}`,
    description:
      "its stored secret cannot be decrypted with the configured keys",
  };
}

/** The message every unexpected failure shows a client. */
export const internalMessage = "internal error";

/**
 * Maps any error thrown below the protocol adapters to the ConnectError a
 * client sees. Errors we raised on purpose pass through; store failures become
 * UNAVAILABLE; a stored secret no configured key opens is the operator's to
 * fix, so FAILED_PRECONDITION; everything else becomes INTERNAL with a fixed
 * message, so no driver text, path or stack ever reaches a client. The
 * original stays as `cause` for the log.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) {
    return wellFormed(err);
  }
  if (err instanceof SecretDecryptError) {
    return fieldError(
      Code.FailedPrecondition,
      [undecryptableSecret(err.owner.field)],
      err,
    );
  }
  if (err instanceof StoreUnavailableError) {
    return new ConnectError(
      "store unavailable",
      Code.Unavailable,
      undefined,
      undefined,
      err,
    );
  }
  return new ConnectError(
    internalMessage,
    Code.Internal,
    undefined,
    undefined,
    err,
  );
}

const loneSurrogate = /\p{Cs}/u;

/**
 * The error with every lone surrogate in its message replaced by U+FFFD:
 * gRPC percent-encodes the message into a header, which Connect-ES cannot do
 * for a lone surrogate, and the call would never be answered.
 */
function wellFormed(error: ConnectError): ConnectError {
  if (!loneSurrogate.test(error.rawMessage)) {
    return error;
  }
  const fixed = new ConnectError(
    error.rawMessage.replace(/\p{Cs}/gu, "\uFFFD"),
    error.code,
    error.metadata,
    undefined,
    error.cause,
  );
  // NOTE: the constructor takes outgoing details only; these may be either.
  fixed.details.push(...error.details);
  return fixed;
}
