import { Agent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import {
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import {
  type CaConnector,
  CaConnectorService,
} from "../../../gen/caconnector/v1/caconnector_pb.js";
import type { CaConnectorClient, Connector } from "./client.js";

/** Which Connect-ES transport a client uses. */
export interface ConnectClientOptions {
  protocol: "connect" | "grpc-web" | "grpc";
  httpVersion: "1.1" | "2";
  /** Protobuf binary, else JSON; Connect-ES for Node defaults to binary. */
  useBinaryFormat: boolean;
  /** Trusted CA certificate for an https base URL. */
  ca?: Buffer;
  /** Admin JWT sent as `authorization: Bearer …`; none when absent. */
  token?: string | undefined;
}

/** A client built on a Connect-ES transport for Node. */
export function openConnectClient(
  baseUrl: string,
  options: ConnectClientOptions,
): CaConnectorClient {
  const { transport, close } = nodeTransport(baseUrl, options);
  const client = createClient(CaConnectorService, transport);
  return {
    async save(request) {
      const response = await client.saveCaConnector({
        name: request.name,
        type: request.type,
        config: request.config ?? {},
        descriptions: request.descriptions ?? {},
        validateOnly: request.validateOnly ?? false,
        ...(request.expectedRevision === undefined
          ? {}
          : { expectedRevision: BigInt(request.expectedRevision) }),
      });
      return {
        id: Number(response.id),
        created: response.created,
        revision: Number(response.revision),
      };
    },
    async list(filter = {}) {
      const response = await client.listCaConnectors({
        name: filter.name ?? "",
        type: filter.type ?? "",
      });
      return response.connectors.map(fromConnectMessage);
    },
    async get(name) {
      const response = await client.getCaConnector({ name });
      if (!response.connector) {
        throw new Error("GetCaConnector answered without a connector");
      }
      return fromConnectMessage(response.connector);
    },
    async delete(name) {
      const response = await client.deleteCaConnector({ name });
      return Number(response.id);
    },
    async specificOptions(type, config) {
      const response = await client.getSpecificOptions({ type, config });
      return response.options ?? {};
    },
    async types() {
      const response = await client.listConnectorTypes({});
      return response.types.map((type) => ({
        name: type.name,
        description: type.description,
        fields: type.fields.map((field) => ({
          key: field.key,
          type: field.type,
          required: field.required,
          secret: field.secret,
          description: field.description,
        })),
      }));
    },
    close,
  };
}

function nodeTransport(
  baseUrl: string,
  options: ConnectClientOptions,
): { transport: Transport; close(): void } {
  const { token } = options;
  const authorize: Interceptor = (next) => (request) => {
    if (token) {
      request.header.set("authorization", `Bearer ${token}`);
    }
    return next(request);
  };
  const common = {
    baseUrl,
    useBinaryFormat: options.useBinaryFormat,
    interceptors: [authorize],
  };
  const createTransport = {
    connect: createConnectTransport,
    "grpc-web": createGrpcWebTransport,
    grpc: createGrpcTransport,
  }[options.protocol];

  if (options.httpVersion === "1.1") {
    // An agent of our own, so the test can drop its kept-alive sockets.
    const agent = baseUrl.startsWith("https:")
      ? new HttpsAgent({
          keepAlive: true,
          ...(options.ca ? { ca: options.ca } : {}),
        })
      : new Agent({ keepAlive: true });
    const transport = createTransport({
      ...common,
      httpVersion: "1.1",
      nodeOptions: { agent },
    });
    return { transport, close: () => agent.destroy() };
  }

  const sessionManager = new Http2SessionManager(
    baseUrl,
    {},
    options.ca ? { ca: options.ca } : {},
  );
  const transport = createTransport({
    ...common,
    httpVersion: "2",
    sessionManager,
  });
  return { transport, close: () => sessionManager.abort() };
}

function fromConnectMessage(message: CaConnector): Connector {
  return {
    id: Number(message.id),
    name: message.name,
    type: message.type,
    data: { ...message.data },
    descriptions: { ...message.descriptions },
    templates: message.templates ?? {},
    revision: Number(message.revision),
    createTime: dateOf(message.createTime),
    updateTime: dateOf(message.updateTime),
  };
}

function dateOf(timestamp: Timestamp | undefined): Date {
  if (!timestamp) {
    throw new Error("connector without a timestamp");
  }
  return timestampDate(timestamp);
}
