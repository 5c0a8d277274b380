import { fileURLToPath } from "node:url";
import { fromBinary, type JsonObject } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { AnySchema, anyIs, anyUnpack } from "@bufbuild/protobuf/wkt";
import { type Code, ConnectError } from "@connectrpc/connect";
import {
  type ChannelCredentials,
  type ChannelOptions,
  Client,
  credentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import {
  loadSync,
  type MethodDefinition,
  type ServiceDefinition,
} from "@grpc/proto-loader";
import {
  type BadRequest,
  BadRequestSchema,
} from "../../../gen/google/rpc/error_details_pb.js";
import type {
  CaConnectorClient,
  Connector,
  ConnectorTypeInfo,
} from "./client.js";

// The proto directory the reference client loads the service from.
const protoDir = fileURLToPath(new URL("../../../proto/", import.meta.url));

/** How a grpc-js client reaches the server. */
export interface GrpcJsClientOptions {
  /** Insecure (h2c) when absent. */
  credentials?: ChannelCredentials;
  channelOptions?: ChannelOptions;
  /** Admin JWT sent as `authorization` metadata; none when absent. */
  token?: string | undefined;
}

/** A client built on `@grpc/grpc-js` and `@grpc/proto-loader`. */
export interface GrpcJsClient extends CaConnectorClient {
  /**
   * Calls a method and hands back what grpc-js received, undecoded: the
   * response bytes, or the error with its trailers.
   */
  raw(
    method: string,
    request: object,
  ): Promise<{ bytes?: Buffer; error?: ServiceError }>;
}

/**
 * A client made the way grpc-js users make one: the service loaded from the
 * .proto at run time, int64 as decimal strings, Struct and Timestamp as
 * plain objects. The well-known imports come with protobufjs itself, so the
 * proto directory is the only include path.
 */
export function openGrpcJsClient(
  target: string,
  options: GrpcJsClientOptions = {},
): GrpcJsClient {
  const definition = loadSync("caconnector/v1/caconnector.proto", {
    includeDirs: [protoDir],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const service = definition["caconnector.v1.CaConnectorService"];
  if (!isServiceDefinition(service)) {
    throw new Error("caconnector.proto defines no CaConnectorService");
  }
  const client = new Client(
    target,
    options.credentials ?? credentials.createInsecure(),
    options.channelOptions ?? {},
  );
  const metadata = () => {
    const metadata = new Metadata();
    if (options.token) {
      metadata.set("authorization", `Bearer ${options.token}`);
    }
    return metadata;
  };

  function call<T>(method: string, request: object): Promise<T> {
    const definition = methodOf(service as ServiceDefinition, method);
    return new Promise<T>((resolve, reject) => {
      client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize,
        // NOTE: the object shape is fixed by the loader options above.
        (bytes: Buffer) => definition.responseDeserialize(bytes) as T,
        request,
        metadata(),
        { deadline: Date.now() + 10_000 },
        (error, response) => {
          if (error) {
            reject(fromServiceError(error));
          } else if (response === undefined) {
            reject(new Error(`${method} answered without a message`));
          } else {
            resolve(response);
          }
        },
      );
    });
  }

  return {
    async save(request) {
      const response = await call<WireSaveResponse>("SaveCaConnector", {
        name: request.name,
        type: request.type,
        config: request.config ?? {},
        descriptions: request.descriptions ?? {},
        validateOnly: request.validateOnly ?? false,
        ...(request.expectedRevision === undefined
          ? {}
          : { expectedRevision: String(request.expectedRevision) }),
      });
      return {
        id: Number(response.id),
        created: response.created,
        revision: Number(response.revision),
      };
    },
    async list(filter = {}) {
      const response = await call<{ connectors: WireConnector[] }>(
        "ListCaConnectors",
        { name: filter.name ?? "", type: filter.type ?? "" },
      );
      return response.connectors.map(fromWireConnector);
    },
    async get(name) {
      const response = await call<{ connector: WireConnector | null }>(
        "GetCaConnector",
        { name },
      );
      if (!response.connector) {
        throw new Error("GetCaConnector answered without a connector");
      }
      return fromWireConnector(response.connector);
    },
    async delete(name) {
      const response = await call<{ id: string }>("DeleteCaConnector", {
        name,
      });
      return Number(response.id);
    },
    async specificOptions(type, config) {
      const response = await call<{ options: WireStruct | null }>(
        "GetSpecificOptions",
        { type, config },
      );
      return structToJson(response.options);
    },
    async types() {
      const response = await call<{ types: ConnectorTypeInfo[] }>(
        "ListConnectorTypes",
        {},
      );
      return response.types;
    },
    raw(method, request) {
      const definition = methodOf(service, method);
      return new Promise((resolve) => {
        client.makeUnaryRequest(
          definition.path,
          definition.requestSerialize,
          (bytes: Buffer) => bytes,
          request,
          metadata(),
          { deadline: Date.now() + 10_000 },
          (error, bytes) => resolve(error ? { error } : bytes ? { bytes } : {}),
        );
      });
    },
    close: () => client.close(),
  };
}

function isServiceDefinition(value: unknown): value is ServiceDefinition {
  return (
    typeof value === "object" &&
    value !== null &&
    !("format" in value) &&
    "ListCaConnectors" in value
  );
}

function methodOf(
  service: ServiceDefinition,
  name: string,
): MethodDefinition<object, object> {
  const method = service[name];
  if (!method) {
    throw new Error(`CaConnectorService has no method ${name}`);
  }
  return method;
}

interface WireSaveResponse {
  id: string;
  created: boolean;
  revision: string;
}

interface WireTimestamp {
  seconds: string;
  nanos: number;
}

interface WireConnector {
  id: string;
  name: string;
  type: string;
  data: Record<string, string>;
  descriptions: Record<string, string>;
  templates: WireStruct | null;
  revision: string;
  createTime: WireTimestamp | null;
  updateTime: WireTimestamp | null;
}

interface WireStruct {
  fields?: Record<string, WireValue>;
}

interface WireValue {
  kind?: string;
  nullValue?: string;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: WireStruct;
  listValue?: { values?: WireValue[] };
}

function fromWireConnector(wire: WireConnector): Connector {
  return {
    id: Number(wire.id),
    name: wire.name,
    type: wire.type,
    data: { ...wire.data },
    descriptions: { ...wire.descriptions },
    templates: structToJson(wire.templates),
    revision: Number(wire.revision),
    createTime: wireDate(wire.createTime),
    updateTime: wireDate(wire.updateTime),
  };
}

function wireDate(timestamp: WireTimestamp | null): Date {
  if (!timestamp) {
    throw new Error("connector without a timestamp");
  }
  return new Date(
    Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1e6),
  );
}

// The JSON a `google.protobuf.Struct` in protobufjs object form stands for.
function structToJson(struct: WireStruct | null): JsonObject {
  const json: JsonObject = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) {
    json[key] = valueToJson(value);
  }
  return json;
}

function valueToJson(value: WireValue): JsonObject[string] {
  switch (value.kind) {
    case "numberValue":
      return value.numberValue ?? 0;
    case "stringValue":
      return value.stringValue ?? "";
    case "boolValue":
      return value.boolValue ?? false;
    case "structValue":
      return structToJson(value.structValue ?? null);
    case "listValue":
      return (value.listValue?.values ?? []).map(valueToJson);
    default:
      return null;
  }
}

/** What a `google.rpc.Status` carries, with its details unpacked. */
export interface RpcStatus {
  code: number;
  message: string;
  badRequests: BadRequest[];
}

/**
 * Decodes the `grpc-status-details-bin` trailer. No generated code for
 * `google.rpc.Status` is in this project, and its three fields are simple
 * enough to read off the wire directly.
 */
export function decodeStatus(bytes: Uint8Array): RpcStatus {
  const status: RpcStatus = { code: 0, message: "", badRequests: [] };
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) {
      status.code = reader.int32();
    } else if (field === 2) {
      status.message = reader.string();
    } else if (field === 3) {
      const detail = fromBinary(AnySchema, reader.bytes());
      const badRequest = anyIs(detail, BadRequestSchema)
        ? anyUnpack(detail, BadRequestSchema)
        : undefined;
      if (badRequest) {
        status.badRequests.push(badRequest);
      }
    } else {
      reader.skip(wireType);
    }
  }
  return status;
}

/** The status details grpc-js received with an error, if any. */
export function statusOf(error: ServiceError): RpcStatus | undefined {
  const [bytes] = error.metadata.get("grpc-status-details-bin");
  return bytes instanceof Buffer ? decodeStatus(bytes) : undefined;
}

// NOTE: grpc-js decodes `grpc-message` with decodeURI, which leaves the
// reserved characters that Connect-ES percent-encodes (":", ",", "/")
// encoded, so `details` may read "name%3A may contain…". The status in the
// details trailer carries the message as sent.
function fromServiceError(error: ServiceError): ConnectError {
  const status = statusOf(error);
  const details = (status?.badRequests ?? []).map((value) => ({
    desc: BadRequestSchema,
    value,
  }));
  return new ConnectError(
    error.details,
    error.code as number as Code,
    undefined,
    details,
    error,
  );
}
