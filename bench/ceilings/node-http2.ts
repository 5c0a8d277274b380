import { createServer } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { announce, readFixture } from "../lib/fixture.js";

/** A prepared answer: status, content type and body bytes. */
interface Answer {
  status: number;
  contentType: string;
  body: Buffer;
}

/**
 * The Connect JSON ceiling: a bare `node:http2` h2c server on the core
 * stream API that reads each request body and answers with the bytes the
 * service gave for the same call.
 */
async function main(): Promise<void> {
  const fixture = await readFixture(process.argv[2] ?? "");
  const answers = new Map<string, Answer>();
  for (const [path, response] of Object.entries(fixture.connectJson)) {
    answers.set(path, {
      status: response.status,
      contentType: response.contentType,
      body: Buffer.from(response.body, "base64"),
    });
  }

  // The same stream limit as the service, so h2load's -m fits both.
  const server = createServer({ settings: { maxConcurrentStreams: 256 } });
  server.on("connection", (socket: Socket) => socket.setNoDelay(true));
  server.on("stream", (stream, headers) => {
    const answer = answers.get(String(headers[":path"]));
    stream.on("error", () => {});
    stream.once("end", () => {
      if (!answer) {
        stream.respond({ ":status": 404 }, { endStream: true });
        return;
      }
      stream.respond({
        ":status": answer.status,
        "content-type": answer.contentType,
        "content-length": answer.body.length,
      });
      stream.end(answer.body);
    });
    stream.resume();
  });
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo;
    announce(`http://127.0.0.1:${port}`);
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
