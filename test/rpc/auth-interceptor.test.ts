import {
  Code,
  ConnectError,
  type ConnectRouter,
  createClient,
  createRouterTransport,
} from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { CaConnectorService } from "../../gen/caconnector/v1/caconnector_pb.js";
import {
  Health,
  HealthCheckResponse_ServingStatus,
} from "../../gen/health/v1/health_pb.js";
import { Authorizer } from "../../src/auth/authorizer.js";
import { mintAdminToken } from "../../src/auth/mint.js";
import { noPolicies } from "../../src/auth/policy-file.js";
import { TokenVerifier } from "../../src/auth/tokens.js";
import { silentLogger } from "../../src/logger.js";
import { authInterceptor } from "../../src/rpc/auth-interceptor.js";

const secret = "a-test-secret-of-the-interceptor";
let admin: string;

beforeAll(async () => {
  admin = await mintAdminToken(secret, {
    username: "admin",
    realm: "",
    role: "admin",
    validitySeconds: 600,
  });
});

/**
 * An in-memory router behind the interceptor, with a Health service (whose
 * proto declares no policy action) and one CaConnectorService method that
 * does; `called` records which handlers ran.
 */
function routerTransport(publicServices: readonly string[] = []) {
  const called: string[] = [];
  const authorizer = new Authorizer({
    verifier: new TokenVerifier(secret),
    policies: noPolicies(),
    logger: silentLogger(),
  });
  const routes = (router: ConnectRouter) => {
    router.service(Health, {
      check() {
        called.push("Health/Check");
        return { status: HealthCheckResponse_ServingStatus.SERVING };
      },
    });
    router.service(CaConnectorService, {
      listConnectorTypes() {
        called.push("ListConnectorTypes");
        return { types: [] };
      },
    });
  };
  const transport = createRouterTransport(routes, {
    router: { interceptors: [authInterceptor(authorizer, publicServices)] },
  });
  return { transport, called };
}

describe("authInterceptor", () => {
  it("refuses an admin a method that declares no policy action", async () => {
    const { transport, called } = routerTransport();
    const health = createClient(Health, transport);

    const failure = await health
      .check({}, { headers: { authorization: `Bearer ${admin}` } })
      .catch((err: unknown) => err);

    expect(failure).toBeInstanceOf(ConnectError);
    expect((failure as ConnectError).code).toBe(Code.PermissionDenied);
    expect((failure as ConnectError).rawMessage).toBe(
      "this method declares no policy action and is refused",
    );
    expect(called).toEqual([]);
  });

  it("lets the same admin call a method that declares one", async () => {
    const { transport, called } = routerTransport();
    const connectors = createClient(CaConnectorService, transport);

    const answer = await connectors.listConnectorTypes(
      {},
      { headers: { authorization: `Bearer ${admin}` } },
    );

    expect(answer.types).toEqual([]);
    expect(called).toEqual(["ListConnectorTypes"]);
  });

  it("lets a service named public through without a token", async () => {
    const { transport, called } = routerTransport([Health.typeName]);
    const health = createClient(Health, transport);

    const answer = await health.check({});

    expect(answer.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(called).toEqual(["Health/Check"]);
  });
});
