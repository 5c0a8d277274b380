// A Connect client for CaConnectorService over HTTP/2, using the code
// generated into gen/. Run: CACONNECTOR_URL=http://127.0.0.1:8080 \
//   TOKEN=$(npm run --silent token -- --user admin) \
//   npx tsx examples/connect-client.ts
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { CaConnectorService } from "../gen/caconnector/v1/caconnector_pb.js";

const baseUrl = process.env.CACONNECTOR_URL ?? "http://127.0.0.1:8080";
const token = process.env.TOKEN ?? "";

const transport = createConnectTransport({ baseUrl, httpVersion: "2" });
const client = createClient(CaConnectorService, transport);
const headers = { authorization: `Bearer ${token}` };

const saved = await client.saveCaConnector(
  {
    name: "example-connect",
    type: "local",
    config: { cakey: "/etc/ca/key.pem", cacert: "/etc/ca/cert.pem" },
  },
  { headers },
);
process.stdout.write(`saved id=${saved.id} revision=${saved.revision}\n`);

const { connectors } = await client.listCaConnectors({}, { headers });
for (const connector of connectors) {
  process.stdout.write(`${connector.id} ${connector.name} ${connector.type}\n`);
}
