import { execFile } from "node:child_process";
import type { IncomingMessage, ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  create,
  createFileRegistry,
  fromBinary,
  getExtension,
} from "@bufbuild/protobuf";
import {
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { Client, credentials } from "@grpc/grpc-js";
import { loadSync, type MethodDefinition } from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CaConnectorService,
  file_caconnector_v1_caconnector,
  policy_action,
} from "../../gen/caconnector/v1/caconnector_pb.js";
import {
  ServerReflection,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { Readiness, registerHealth } from "../../src/ops/health.js";
import { registerReflection } from "../../src/ops/reflection.js";
import { listen, type RunningServer } from "../../src/server/http-server.js";

const connectorService = "caconnector.v1.CaConnectorService";
const allServices = [
  connectorService,
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

let readiness: Readiness;
let running: RunningServer;
let sessions: Http2SessionManager;

beforeAll(async () => {
  readiness = new Readiness({ store: { ping: async () => {} } });
  const connect = connectNodeAdapter({
    routes: (router) => {
      registerHealth(router, readiness);
      registerReflection(
        router,
        [file_caconnector_v1_caconnector],
        [CaConnectorService, Health],
      );
    },
  });
  running = await listen(
    (request, response) =>
      connect(request as IncomingMessage, response as ServerResponse),
    { host: "127.0.0.1", port: 0 },
  );
  sessions = new Http2SessionManager(running.url);
});

afterAll(async () => {
  sessions?.abort();
  readiness?.close();
  await running?.close(100);
});

/** A reflection request as either protocol version accepts it. */
interface Query {
  host?: string;
  messageRequest?:
    | {
        case:
          | "fileByFilename"
          | "fileContainingSymbol"
          | "allExtensionNumbersOfType"
          | "listServices";
        value: string;
      }
    | {
        case: "fileContainingExtension";
        value: { containingType: string; extensionNumber: number };
      };
}

/** Sends the requests on one stream and collects the answers. */
async function reflect(
  queries: Query[],
  version: "v1" | "v1alpha" = "v1",
): Promise<ServerReflectionResponse["messageResponse"][]> {
  const transport = createGrpcTransport({
    baseUrl: running.url,
    sessionManager: sessions,
  });
  // NOTE: both versions carry the same fields under the same numbers, so the
  // v1 messages read the v1alpha answers alike.
  const responses =
    version === "v1"
      ? createClient(ServerReflection, transport).serverReflectionInfo(
          toStream(queries),
        )
      : createClient(v1alpha.ServerReflection, transport).serverReflectionInfo(
          toStream(queries),
        );
  const answers: ServerReflectionResponse["messageResponse"][] = [];
  for await (const response of responses) {
    answers.push(response.messageResponse as (typeof answers)[number]);
  }
  return answers;
}

async function* toStream(queries: Query[]) {
  yield* queries;
}

/** The descriptors of a file_descriptor_response; throws for another. */
function filesOf(
  answer: ServerReflectionResponse["messageResponse"] | undefined,
): FileDescriptorProto[] {
  if (answer?.case !== "fileDescriptorResponse") {
    throw new Error(`expected files, got ${answer?.case}`);
  }
  return answer.value.fileDescriptorProto.map((bytes) =>
    fromBinary(FileDescriptorProtoSchema, bytes),
  );
}

function errorOf(
  answer: ServerReflectionResponse["messageResponse"] | undefined,
): { errorCode: number; errorMessage: string } {
  if (answer?.case !== "errorResponse") {
    throw new Error(`expected an error, got ${answer?.case}`);
  }
  return answer.value;
}

describe("grpc.reflection.v1 over Connect gRPC", () => {
  it("lists every registered service", async () => {
    const [answer] = await reflect([
      { messageRequest: { case: "listServices", value: "*" } },
    ]);

    expect(answer?.case).toBe("listServicesResponse");
    const names =
      answer?.case === "listServicesResponse"
        ? answer.value.service.map((s) => s.name)
        : [];
    expect(names).toEqual(allServices);
  });

  it("returns the file of a service with all it imports", async () => {
    const [answer] = await reflect([
      {
        messageRequest: {
          case: "fileContainingSymbol",
          value: connectorService,
        },
      },
    ]);
    const files = filesOf(answer);

    expect(files.map((f) => f.name)).toEqual([
      "caconnector/v1/caconnector.proto",
      "google/protobuf/descriptor.proto",
      "google/protobuf/struct.proto",
      "google/protobuf/timestamp.proto",
    ]);
  });

  it("returns descriptors a client can build the service from", async () => {
    const [answer] = await reflect([
      {
        messageRequest: {
          case: "fileContainingSymbol",
          value: connectorService,
        },
      },
    ]);

    // The registry wants imports before their importers, the reverse of the
    // answer, which puts the file asked for first.
    const registry = createFileRegistry(
      create(FileDescriptorSetSchema, { file: filesOf(answer).reverse() }),
    );
    const service = registry.getService(connectorService);
    const method = service?.methods.find((m) => m.name === "DeleteCaConnector");
    const options = method?.proto.options;

    expect(service?.methods).toHaveLength(6);
    expect(options && getExtension(options, policy_action)).toBe(
      "caconnectordelete",
    );
  });

  it("finds the files of methods, messages, nested types, enums", async () => {
    const symbols = [
      `${connectorService}.SaveCaConnector`,
      "caconnector.v1.CaConnector",
      "google.protobuf.Struct",
      "google.protobuf.FieldDescriptorProto.Type",
      "grpc.health.v1.HealthCheckResponse.ServingStatus",
      ".google.protobuf.Timestamp",
    ];

    const answers = await reflect(
      symbols.map((value) => ({
        messageRequest: { case: "fileContainingSymbol", value },
      })),
    );

    expect(answers.map((a) => filesOf(a)[0]?.name)).toEqual([
      "caconnector/v1/caconnector.proto",
      "caconnector/v1/caconnector.proto",
      "google/protobuf/struct.proto",
      "google/protobuf/descriptor.proto",
      "health/v1/health.proto",
      "google/protobuf/timestamp.proto",
    ]);
  });

  it("sends a file once per stream, except the one asked for", async () => {
    const [first, second, third] = await reflect([
      {
        messageRequest: {
          case: "fileByFilename",
          value: "google/protobuf/struct.proto",
        },
      },
      {
        messageRequest: {
          case: "fileContainingSymbol",
          value: connectorService,
        },
      },
      {
        messageRequest: {
          case: "fileContainingSymbol",
          value: connectorService,
        },
      },
    ]);

    expect(filesOf(first).map((f) => f.name)).toEqual([
      "google/protobuf/struct.proto",
    ]);
    expect(filesOf(second).map((f) => f.name)).toEqual([
      "caconnector/v1/caconnector.proto",
      "google/protobuf/descriptor.proto",
      "google/protobuf/timestamp.proto",
    ]);
    expect(filesOf(third).map((f) => f.name)).toEqual([
      "caconnector/v1/caconnector.proto",
    ]);
  });

  it("returns reflection's own file by name", async () => {
    const [answer] = await reflect([
      {
        messageRequest: {
          case: "fileByFilename",
          value: "grpc/reflection/v1/reflection.proto",
        },
      },
    ]);

    expect(filesOf(answer)[0]?.service[0]?.name).toBe("ServerReflection");
  });

  it("finds the policy_action extension of MethodOptions", async () => {
    const [numbers, file] = await reflect([
      {
        messageRequest: {
          case: "allExtensionNumbersOfType",
          value: "google.protobuf.MethodOptions",
        },
      },
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: {
            containingType: "google.protobuf.MethodOptions",
            extensionNumber: 50301,
          },
        },
      },
    ]);

    expect(numbers).toEqual({
      case: "allExtensionNumbersResponse",
      value: expect.objectContaining({
        baseTypeName: "google.protobuf.MethodOptions",
        extensionNumber: [50301],
      }),
    });
    expect(filesOf(file)[0]?.name).toBe("caconnector/v1/caconnector.proto");
  });

  it("lists no extension numbers of a message nobody extends", async () => {
    const [answer] = await reflect([
      {
        messageRequest: {
          case: "allExtensionNumbersOfType",
          value: "google.protobuf.Struct",
        },
      },
    ]);

    expect(answer?.case).toBe("allExtensionNumbersResponse");
    expect(
      answer?.case === "allExtensionNumbersResponse" &&
        answer.value.extensionNumber,
    ).toEqual([]);
  });

  it("answers NOT_FOUND for unknown elements, keeping the stream", async () => {
    const answers = await reflect([
      { messageRequest: { case: "fileContainingSymbol", value: "no.Such" } },
      { messageRequest: { case: "fileByFilename", value: "no/such.proto" } },
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: {
            containingType: "google.protobuf.MethodOptions",
            extensionNumber: 50302,
          },
        },
      },
      {
        messageRequest: { case: "allExtensionNumbersOfType", value: "no.Such" },
      },
      {
        messageRequest: {
          case: "allExtensionNumbersOfType",
          value: connectorService,
        },
      },
      { messageRequest: { case: "listServices", value: "" } },
    ]);

    const last = answers.pop();

    expect(answers.map((a) => errorOf(a).errorCode)).toEqual(
      Array(5).fill(Code.NotFound),
    );
    expect(answers.map((a) => errorOf(a).errorMessage)).toEqual([
      "file_containing_symbol is unknown",
      "file_by_filename is unknown",
      "file_containing_extension is unknown",
      "all_extension_numbers_of_type is unknown",
      "all_extension_numbers_of_type is unknown",
    ]);
    expect(last?.case).toBe("listServicesResponse");
  });

  it("answers INVALID_ARGUMENT for an empty request", async () => {
    const [answer] = await reflect([{ host: "example" }]);

    expect(errorOf(answer).errorCode).toBe(Code.InvalidArgument);
  });
});

describe("grpc.reflection.v1alpha over Connect gRPC", () => {
  it("lists every registered service", async () => {
    const [answer] = await reflect(
      [{ messageRequest: { case: "listServices", value: "" } }],
      "v1alpha",
    );

    expect(
      answer?.case === "listServicesResponse" &&
        answer.value.service.map((s) => s.name),
    ).toEqual(allServices);
  });

  it("returns the file of a service and answers NOT_FOUND", async () => {
    const [found, missing] = await reflect(
      [
        {
          messageRequest: {
            case: "fileContainingSymbol",
            value: connectorService,
          },
        },
        { messageRequest: { case: "fileContainingSymbol", value: "no.Such" } },
      ],
      "v1alpha",
    );

    expect(filesOf(found)).toHaveLength(4);
    expect(errorOf(missing).errorCode).toBe(Code.NotFound);
  });
});

describe("reflection with the reference clients", () => {
  it("lists the services to a grpc-js client", async () => {
    const protoPath = fileURLToPath(
      new URL(
        "../../node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto",
        import.meta.url,
      ),
    );
    const definition = loadSync(protoPath, { keepCase: true, oneofs: true });
    const service = definition["grpc.reflection.v1.ServerReflection"];
    const info =
      service && "ServerReflectionInfo" in service
        ? (service.ServerReflectionInfo as MethodDefinition<object, object>)
        : undefined;
    if (!info) {
      throw new Error("reflection.proto defines no ServerReflectionInfo");
    }
    const client = new Client(
      `127.0.0.1:${running.port}`,
      credentials.createInsecure(),
    );

    try {
      const call = client.makeBidiStreamRequest(
        info.path,
        info.requestSerialize,
        info.responseDeserialize,
      );
      const responses: object[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on("data", (response: object) => responses.push(response));
        call.on("error", reject);
        call.on("end", resolve);
      });
      call.write({ list_services: "*" });
      call.end();
      await done;

      expect(responses).toHaveLength(1);
      expect(responses[0]).toMatchObject({
        message_response: "list_services_response",
        list_services_response: {
          service: allServices.map((name) => ({ name })),
        },
      });
    } finally {
      client.close();
    }
  });

  const buf = fileURLToPath(
    new URL("../../node_modules/.bin/buf", import.meta.url),
  );
  const run = promisify(execFile);

  it("lists the methods to buf curl with either protocol", async () => {
    for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
      const { stdout } = await run(buf, [
        "curl",
        "--list-methods",
        "--http2-prior-knowledge",
        "--reflect-protocol",
        protocol,
        running.url,
      ]);

      expect(stdout.split("\n")).toContain(
        `${connectorService}/ListCaConnectors`,
      );
      expect(stdout.split("\n")).toContain("grpc.health.v1.Health/Watch");
    }
  });

  it("lets buf curl call a method it learned by reflection", async () => {
    const { stdout } = await run(buf, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--data",
      '{"service": "caconnector.v1.CaConnectorService"}',
      `${running.url}/grpc.health.v1.Health/Check`,
    ]);

    expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
  });
});
