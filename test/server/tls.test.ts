import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { promisify } from "node:util";
import { Code } from "@connectrpc/connect";
import { credentials } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../support/server.js";
import { type CaConnectorClient, failureOf } from "./support/client.js";
import { openConnectClient } from "./support/connect-client.js";
import { openGrpcJsClient } from "./support/grpc-js-client.js";

const run = promisify(execFile);

let running: TestServer;
let token: string;
let certDir: string;
let cert: Buffer;
/** `https://localhost:<port>`: the name the certificate is issued to. */
let httpsUrl: string;

/**
 * Writes a throwaway self-signed certificate for localhost and 127.0.0.1
 * with the openssl CLI, since Node has no certificate generator.
 */
async function selfSignedCertificate(
  dir: string,
): Promise<{ cert: Buffer; key: Buffer }> {
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  await run(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ],
    { timeout: 15_000 },
  );
  return { cert: await readFile(certFile), key: await readFile(keyFile) };
}

beforeAll(async () => {
  certDir = await mkdtemp(join(tmpdir(), "caconnector-tls-"));
  const pair = await selfSignedCertificate(certDir);
  cert = pair.cert;
  running = await startTestServer({ tls: pair });
  token = await running.token();
  httpsUrl = `https://localhost:${running.port}`;
});

afterAll(async () => {
  await running?.close();
  if (certDir) {
    await rm(certDir, { recursive: true, force: true });
  }
});

/** Runs `use` with a client and closes the client whatever happens. */
async function withClient<T>(
  client: CaConnectorClient,
  use: (client: CaConnectorClient) => Promise<T>,
): Promise<T> {
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** The protocol a TLS handshake with the given ALPN offer settles on. */
function negotiatedProtocol(offer: string[]): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: "127.0.0.1",
      port: running.port,
      servername: "localhost",
      ca: cert,
      ALPNProtocols: offer,
      timeout: 5000,
    });
    socket.once("secureConnect", () => {
      resolve(socket.alpnProtocol ?? false);
      socket.destroy();
    });
    socket.once("timeout", () => {
      socket.destroy();
      reject(new Error("TLS handshake timed out"));
    });
    socket.once("error", reject);
  });
}

describe("TLS", () => {
  it("reports an https URL", () => {
    expect(running.url).toBe(`https://127.0.0.1:${running.port}`);
  });

  it("offers h2 and http/1.1 by ALPN", async () => {
    expect(await negotiatedProtocol(["h2", "http/1.1"])).toBe("h2");
    expect(await negotiatedProtocol(["http/1.1"])).toBe("http/1.1");
  });

  it("serves Connect over HTTPS and HTTP/2", async () => {
    const client = openConnectClient(httpsUrl, {
      protocol: "connect",
      httpVersion: "2",
      useBinaryFormat: false,
      ca: cert,
      token: token,
    });

    await withClient(client, async () => {
      const saved = await client.save({
        name: "tls-connect",
        type: "local",
        config: { cakey: "/ca/key.pem", cacert: "/ca/cert.pem" },
      });
      expect(saved).toMatchObject({ created: true, revision: 1 });
      expect((await client.get("tls-connect")).id).toBe(saved.id);
    });
  });

  it("serves gRPC-Web over HTTPS and HTTP/1.1", async () => {
    const client = openConnectClient(httpsUrl, {
      protocol: "grpc-web",
      httpVersion: "1.1",
      useBinaryFormat: true,
      ca: cert,
      token: token,
    });

    const types = await withClient(client, () => client.types());

    expect(types.map((type) => type.name)).toEqual(["local", "microsoft"]);
  });

  it("serves @grpc/grpc-js with TLS credentials", async () => {
    const client = openGrpcJsClient(`localhost:${running.port}`, {
      credentials: credentials.createSsl(cert),
      token: token,
    });

    await withClient(client, async () => {
      const saved = await client.save({
        name: "tls-grpc-js",
        type: "microsoft",
        config: { hostname: "ca.example.test", port: "50061" },
      });
      expect(saved).toMatchObject({ created: true, revision: 1 });
      const [listed] = await client.list({ name: "tls-grpc-js" });
      expect(listed?.data).toEqual({
        hostname: "ca.example.test",
        port: "50061",
      });
    });
  });

  it("fails for a client that does not trust the certificate", async () => {
    const client = openConnectClient(httpsUrl, {
      protocol: "connect",
      httpVersion: "2",
      useBinaryFormat: true,
      token: token,
    });

    const error = await withClient(client, () => failureOf(client.types()));

    // The code is the client library's choice; the cause is what matters.
    expect(error.code).not.toBe(Code.Unauthenticated);
    expect(error.rawMessage).toMatch(/self[- ]signed certificate/);
  });

  it("serves plain h2c on the same port", async () => {
    const client = openConnectClient(`http://127.0.0.1:${running.port}`, {
      protocol: "grpc",
      httpVersion: "2",
      useBinaryFormat: true,
      token: token,
    });

    const types = await withClient(client, () => client.types());

    expect(types.map((type) => type.name)).toEqual(["local", "microsoft"]);
  });

  it("serves plain HTTP/1.1 on the same port", async () => {
    const client = openConnectClient(`http://127.0.0.1:${running.port}`, {
      protocol: "connect",
      httpVersion: "1.1",
      useBinaryFormat: false,
      token: token,
    });

    const types = await withClient(client, () => client.types());

    expect(types.map((type) => type.name)).toEqual(["local", "microsoft"]);
  });
});
