import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { FieldViolation } from "../plugins/plugin.js";
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
  return new ConnectError(message, code, undefined, [
    { desc: BadRequestSchema, value: detail },
  ]);
}

/** The message every unexpected failure shows a client. */
export const internalMessage = "internal error";

/**
 * Maps any error thrown below the protocol adapters to the ConnectError a
 * client sees. Errors we raised on purpose pass through; store failures become
 * UNAVAILABLE; everything else becomes INTERNAL with a fixed message, so no
 * driver text, path or stack ever reaches a client. The original stays as
 * `cause` for the log.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) {
    return err;
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
