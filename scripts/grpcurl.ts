// Locates or builds the grpcurl binary the examples and tests use and prints
// its path, so CI can build it in a step of its own before `npm test`.
import { ensureGrpcurlBinary } from "../test/support/grpcurl.js";

try {
  const binary = await ensureGrpcurlBinary();
  process.stdout.write(`${binary}\n`);
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
