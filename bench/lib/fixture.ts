import { readFile } from "node:fs/promises";

/** One HTTP response captured from the service, replayed by a ceiling. */
export interface RawResponse {
  status: number;
  contentType: string;
  /** The body bytes in base64. */
  body: string;
}

/**
 * What the service answered for each benchmarked call, handed to the
 * ceiling servers so that each returns the same bytes or message.
 */
export interface Fixture {
  /** REST responses by `METHOD /path`, as wrk requests them. */
  rest: Record<string, RawResponse>;
  /** Connect JSON responses by request path. */
  connectJson: Record<string, RawResponse>;
  /** Response messages in protobuf binary (base64) by RPC. */
  messages: { list: string; get: string; save: string };
}

/** Reads the fixture file a ceiling is started with. */
export async function readFixture(path: string): Promise<Fixture> {
  return JSON.parse(await readFile(path, "utf8")) as Fixture;
}

/** Decodes base64 text to bytes. */
export function fromBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "base64"));
}

/**
 * Tells the parent where a ceiling listens, in the shape of the service's
 * own "listening" log line.
 */
export function announce(url: string): void {
  process.stdout.write(`${JSON.stringify({ msg: "listening", url })}\n`);
}
