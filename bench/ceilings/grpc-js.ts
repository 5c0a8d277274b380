import {
  type DescMessage,
  type DescMethod,
  fromBinary,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  type MethodDefinition,
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import {
  CaConnectorService,
  GetCaConnectorResponseSchema,
  ListCaConnectorsResponseSchema,
  SaveCaConnectorResponseSchema,
} from "../../gen/caconnector/v1/caconnector_pb.js";
import { announce, fromBase64, readFixture } from "../lib/fixture.js";

/**
 * The gRPC ceiling: a bare `@grpc/grpc-js` server whose unary handlers
 * return the messages the service returned. Requests are decoded and
 * responses encoded on every call with protobuf-es, the codec the service
 * uses, so the ratio leaves out the encoding both sides must do.
 */
async function main(): Promise<void> {
  const { messages } = await readFixture(process.argv[2] ?? "");
  const methods = CaConnectorService.method;
  const answers: [DescMethod, unknown][] = [
    [
      methods.listCaConnectors,
      fromBinary(ListCaConnectorsResponseSchema, fromBase64(messages.list)),
    ],
    [
      methods.getCaConnector,
      fromBinary(GetCaConnectorResponseSchema, fromBase64(messages.get)),
    ],
    [
      methods.saveCaConnector,
      fromBinary(SaveCaConnectorResponseSchema, fromBase64(messages.save)),
    ],
  ];

  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  const implementation: UntypedServiceImplementation = {};
  for (const [method, answer] of answers) {
    definition[method.localName] = methodDefinition(method);
    implementation[method.localName] = (
      _call: unknown,
      callback: (error: null, value: unknown) => void,
    ) => callback(null, answer);
  }

  const server = new Server();
  server.addService(definition as ServiceDefinition, implementation);
  server.bindAsync(
    "127.0.0.1:0",
    ServerCredentials.createInsecure(),
    (err, port) => {
      if (err) {
        console.error(err);
        process.exit(1);
      }
      announce(`http://127.0.0.1:${port}`);
    },
  );
}

function methodDefinition(
  method: DescMethod,
): MethodDefinition<unknown, unknown> {
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value) => encode(method.input, value),
    requestDeserialize: (bytes) => fromBinary(method.input, bytes),
    responseSerialize: (value) => encode(method.output, value),
    responseDeserialize: (bytes) => fromBinary(method.output, bytes),
  };
}

function encode(schema: DescMessage, value: unknown): Buffer {
  const bytes = toBinary(schema, value as MessageShape<DescMessage>);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
