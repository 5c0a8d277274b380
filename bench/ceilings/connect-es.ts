import { createServer } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { fromBinary } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  CaConnectorService,
  GetCaConnectorResponseSchema,
  ListCaConnectorsResponseSchema,
  SaveCaConnectorResponseSchema,
} from "../../gen/caconnector/v1/caconnector_pb.js";
import { announce, fromBase64, readFixture } from "../lib/fixture.js";

/**
 * The Connect-ES ceiling: the service's own RPCs implemented by handlers
 * that return the messages the service returned, with no interceptor,
 * store or auth, served by `connectNodeAdapter` on a plain h2c server. It
 * speaks Connect, gRPC and gRPC-Web like the service does.
 */
async function main(): Promise<void> {
  const { messages } = await readFixture(process.argv[2] ?? "");
  const list = fromBinary(
    ListCaConnectorsResponseSchema,
    fromBase64(messages.list),
  );
  const get = fromBinary(
    GetCaConnectorResponseSchema,
    fromBase64(messages.get),
  );
  const save = fromBinary(
    SaveCaConnectorResponseSchema,
    fromBase64(messages.save),
  );

  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(CaConnectorService, {
        listCaConnectors: () => list,
        getCaConnector: () => get,
        saveCaConnector: () => save,
      }),
  });
  const server = createServer(
    { settings: { maxConcurrentStreams: 256 } },
    handler,
  );
  server.on("connection", (socket: Socket) => socket.setNoDelay(true));
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo;
    announce(`http://127.0.0.1:${port}`);
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
