import { createContextKey } from "@connectrpc/connect";
import type { Admin } from "../auth/tokens.js";

/** The authenticated admin of an RPC, for handlers and the request log. */
export const adminKey = createContextKey<Admin | undefined>(undefined, {
  description: "authenticated admin",
});

/** The id of the request an RPC came in with, for its log lines. */
export const requestIdKey = createContextKey<string | undefined>(undefined, {
  description: "request id",
});
