import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { announce, readFixture } from "../lib/fixture.js";

/** A prepared answer: status, headers and body bytes. */
interface Answer {
  status: number;
  headers: Record<string, string | number>;
  body: Buffer;
}

/**
 * The REST ceiling: a bare `node:http` server that reads each request body
 * and answers with the bytes the service gave for the same call.
 */
async function main(): Promise<void> {
  const fixture = await readFixture(process.argv[2] ?? "");
  const answers = new Map<string, Answer>();
  for (const [route, response] of Object.entries(fixture.rest)) {
    const body = Buffer.from(response.body, "base64");
    answers.set(route, {
      status: response.status,
      headers: {
        "content-type": response.contentType,
        "content-length": body.length,
      },
      body,
    });
  }
  const missing: Answer = { status: 404, headers: {}, body: Buffer.alloc(0) };

  const server = createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
    const answer = answers.get(`${req.method} ${req.url}`) ?? missing;
    req.once("end", () => {
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body);
    });
    req.resume();
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
