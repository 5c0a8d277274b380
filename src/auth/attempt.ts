import { type DescMethod, getOption } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { policy_action } from "../../gen/caconnector/v1/caconnector_pb.js";
import type { Attempt } from "./authorizer.js";

/**
 * What a call of an RPC attempts: the policy action declared on the method
 * in the proto, the connector its request names, and whether it writes
 * (every method not marked free of side effects). The REST gateway passes
 * the RPC its route stands for, so both protocols read the same option.
 */
export function attemptOf(method: DescMethod, message: unknown): Attempt {
  const name =
    typeof message === "object" && message !== null && "name" in message
      ? message.name
      : undefined;
  const { action, write } = declared(method);
  return {
    action,
    connector: typeof name === "string" && name !== "" ? name : undefined,
    write,
  };
}

// Reading an option decodes the method's options each time, which costs
// more than the rest of a cached read; descriptors never change.
const declarations = new WeakMap<
  DescMethod,
  Pick<Attempt, "action" | "write">
>();

function declared(method: DescMethod): Pick<Attempt, "action" | "write"> {
  let declaration = declarations.get(method);
  if (!declaration) {
    declaration = {
      action: getOption(method, policy_action),
      write:
        method.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS,
    };
    declarations.set(method, declaration);
  }
  return declaration;
}
