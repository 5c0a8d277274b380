import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Why a caller was turned away. The RPC adapter maps a kind to a gRPC code
 * and the REST gateway to privacyIDEA's error numbers, from this one value.
 */
export type AuthFailure =
  | "missing"
  | "malformed"
  | "expired"
  | "role"
  | "policy"
  | "undeclared";

/** A request that failed authentication or authorization. */
export class AuthError extends Error {
  override readonly name = "AuthError";

  constructor(
    readonly failure: AuthFailure,
    message: string,
    /** The policy action that was refused, for `policy`. */
    readonly action?: string,
  ) {
    super(message);
  }

  /** The error an RPC client sees. */
  toConnectError(): ConnectError {
    const code =
      this.failure === "missing" ||
      this.failure === "malformed" ||
      this.failure === "expired"
        ? Code.Unauthenticated
        : Code.PermissionDenied;
    return new ConnectError(this.message, code, undefined, undefined, this);
  }
}
