// A client built with the reference gRPC implementation, @grpc/grpc-js,
// loading the proto at run time. Run: CACONNECTOR_ADDRESS=127.0.0.1:8080 \
//   TOKEN=$(npm run --silent token -- --user admin) \
//   npx tsx examples/grpc-js-client.ts
import { fileURLToPath } from "node:url";
import {
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

const address = process.env.CACONNECTOR_ADDRESS ?? "127.0.0.1:8080";
const protoDir = fileURLToPath(new URL("../proto", import.meta.url));

const definition = loadSync("caconnector/v1/caconnector.proto", {
  includeDirs: [protoDir],
  longs: String,
  defaults: true,
});
const v1 = (loadPackageDefinition(definition).caconnector as GrpcObject)
  .v1 as GrpcObject;
const Service = v1.CaConnectorService as ServiceClientConstructor;
const client = new Service(address, credentials.createInsecure());

const metadata = new Metadata();
metadata.set("authorization", `Bearer ${process.env.TOKEN ?? ""}`);

client.listCaConnectors(
  {},
  metadata,
  (
    err: Error | null,
    reply?: { connectors: { id: string; name: string }[] },
  ) => {
    if (err) {
      process.stderr.write(`${err.message}\n`);
      process.exitCode = 1;
    } else {
      for (const connector of reply?.connectors ?? []) {
        process.stdout.write(`${connector.id} ${connector.name}\n`);
      }
    }
    client.close();
  },
);
