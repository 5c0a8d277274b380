// Locates or builds the FerretDB binary the tests use and prints its path,
// so CI can build it in a step of its own before `npm test`.
import { ensureFerretDbBinary } from "../test/support/ferretdb.js";

try {
  const binary = await ensureFerretDbBinary();
  process.stdout.write(`${binary}\n`);
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
