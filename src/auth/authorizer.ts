import type { Logger } from "../logger.js";
import { AuthError } from "./errors.js";
import { decide } from "./policy.js";
import type { PolicySource } from "./policy-file.js";
import { type Admin, type TokenVerifier, tokenFromHeaders } from "./tokens.js";

/** Headers as both Node and the Fetch API expose them. */
export interface HeaderReader {
  get(name: string): string | null | undefined;
}

/** What a request asks to do, for the decision and the audit line. */
export interface Attempt {
  /** The policy action; "" when the method declares none. */
  action: string;
  /** The connector the request names, if any. */
  connector?: string | undefined;
  /** Whether the request changes state, which makes it audited. */
  write: boolean;
  /** The id of the request, so audit lines join its other log lines. */
  requestId?: string | undefined;
}

/**
 * The one place that decides whether a request may proceed: token, role,
 * then admin policy. The Connect interceptor and the REST gateway both call
 * it, so every protocol gets the same answer. Denials and writes leave an
 * audit line; tokens never do.
 */
export class Authorizer {
  readonly #verifier: TokenVerifier;
  readonly #policies: PolicySource;
  readonly #audit: Logger;

  constructor(deps: {
    verifier: TokenVerifier;
    policies: PolicySource;
    logger: Logger;
  }) {
    this.#verifier = deps.verifier;
    this.#policies = deps.policies;
    this.#audit = deps.logger.child({ component: "audit" });
  }

  /** Resolves the admin allowed to make the attempt; throws `AuthError`. */
  async authorize(headers: HeaderReader, attempt: Attempt): Promise<Admin> {
    const seen: { admin?: Admin } = {};
    try {
      return await this.#check(headers, attempt.action, seen);
    } catch (err) {
      if (err instanceof AuthError) {
        this.#audit.warn(
          {
            action: attempt.action,
            connector: attempt.connector,
            admin: seen.admin?.username,
            outcome: `denied:${err.failure}`,
            requestId: attempt.requestId,
          },
          "denied",
        );
      }
      throw err;
    }
  }

  /** Writes the audit line of a write that was allowed and then ran. */
  recordWrite(admin: Admin, attempt: Attempt, outcome: string): void {
    this.#audit.info(
      {
        action: attempt.action,
        connector: attempt.connector,
        admin: admin.username,
        realm: admin.realm,
        outcome,
        requestId: attempt.requestId,
      },
      "write",
    );
  }

  async #check(
    headers: HeaderReader,
    action: string,
    seen: { admin?: Admin },
  ): Promise<Admin> {
    const token = tokenFromHeaders(headers);
    if (!token) {
      throw new AuthError(
        "missing",
        "authentication failure: missing authorization header",
      );
    }
    const admin = await this.#verifier.verify(token);
    seen.admin = admin;
    if (admin.role !== "admin") {
      throw new AuthError(
        "role",
        "authentication failure: you do not have the necessary role (['admin']) to access this resource",
      );
    }
    if (action === "") {
      throw new AuthError(
        "undeclared",
        "this method declares no policy action and is refused",
      );
    }
    const decision = decide(this.#policies.current(), admin, action);
    if (!decision.allowed) {
      throw new AuthError(
        "policy",
        `admin actions are defined, but the action ${action} is not allowed`,
        action,
      );
    }
    return admin;
  }
}
