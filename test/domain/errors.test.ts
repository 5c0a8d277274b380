import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  internalMessage,
  invalidArgument,
  toConnectError,
} from "../../src/domain/errors.js";
import { SecretDecryptError } from "../../src/secrets/secret-box.js";
import { StoreUnavailableError } from "../../src/store/errors.js";

describe("toConnectError", () => {
  it("passes a ConnectError through unchanged", () => {
    const err = new ConnectError("name: is required", Code.InvalidArgument);
    expect(toConnectError(err)).toBe(err);
  });

  it("replaces lone surrogates in a message, keeping code and details", () => {
    const err = invalidArgument([{ field: "name", description: "x\ud800y" }]);
    const fixed = toConnectError(err);
    expect(fixed.code).toBe(Code.InvalidArgument);
    expect(fixed.rawMessage).toBe("name: x\ufffdy");
    expect(encodeURIComponent(fixed.rawMessage)).toBe("name%3A%20x%EF%BF%BDy");
    expect(fixed.details).toEqual(err.details);
  });

  it("maps an unreachable store to UNAVAILABLE without its text", () => {
    const cause = new StoreUnavailableError("connect ECONNREFUSED 10.0.0.5");
    const err = toConnectError(cause);
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toBe("store unavailable");
    expect(err.cause).toBe(cause);
  });

  it("maps an undecryptable secret to FAILED_PRECONDITION naming its field", () => {
    const owner = { connector: "ca1", field: "ssl_client_key_password" };
    const cause = new SecretDecryptError(
      'secret of field "ssl_client_key_password" uses key id "old"',
      owner,
    );
    const err = toConnectError(cause);
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toBe(
      "config.ssl_client_key_password: its stored secret cannot be decrypted with the configured keys",
    );
    expect(err.rawMessage).not.toContain("old");
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations).toHaveLength(
      1,
    );
    expect(err.cause).toBe(cause);
  });

  it("hides every other error behind a fixed INTERNAL message", () => {
    const cause = new Error("driver said: auth failed for user:hunter2");
    const err = toConnectError(cause);
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe(internalMessage);
    expect(err.message).not.toContain("hunter2");
    expect(toConnectError("a string").rawMessage).toBe(internalMessage);
  });
});

describe("invalidArgument", () => {
  it("names every field in the message and in BadRequest details", () => {
    const err = invalidArgument([
      { field: "config.port", description: "must be an integer" },
      { field: "name", description: "is required" },
    ]);
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe(
      "config.port: must be an integer; name: is required",
    );
    const [detail] = err.findDetails(BadRequestSchema);
    expect(detail?.fieldViolations.map((v) => v.field)).toEqual([
      "config.port",
      "name",
    ]);
  });
});
