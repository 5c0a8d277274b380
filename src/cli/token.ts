import { parseArgs } from "node:util";
import { mintAdminToken } from "../auth/mint.js";
import { ConfigError, loadConfig } from "../config.js";

const usage = `usage: npm run token -- --user NAME [--realm REALM] [--role admin|user] [--hours N]

Prints a JWT signed with AUTH_JWT_SECRET (or the development secret under
./data), in the format privacyIDEA's /auth issues.`;

/** Mints a token for the configured service and prints it on stdout. */
async function run(): Promise<void> {
  const { values } = parseArgs({
    options: {
      user: { type: "string" },
      realm: { type: "string", default: "" },
      role: { type: "string", default: "admin" },
      hours: { type: "string", default: "8" },
      help: { type: "boolean", default: false },
    },
  });
  const hours = Number(values.hours);
  if (
    values.help ||
    !values.user ||
    !(hours > 0) ||
    (values.role !== "admin" && values.role !== "user")
  ) {
    process.stderr.write(`${usage}\n`);
    process.exit(values.help ? 0 : 2);
  }
  const config = loadConfig(process.env);
  if (!config.jwtSecret) {
    process.stderr.write(
      "token: AUTH_JWT_SECRET is not set; tokens for public keys are signed elsewhere\n",
    );
    process.exit(2);
  }
  for (const path of config.created) {
    process.stderr.write(`token: created development secret ${path}\n`);
  }
  const token = await mintAdminToken(config.jwtSecret, {
    username: values.user,
    realm: values.realm,
    role: values.role,
    validitySeconds: Math.round(hours * 3600),
  });
  process.stdout.write(`${token}\n`);
}

run().catch((err: unknown) => {
  const message = err instanceof ConfigError ? err.message : String(err);
  process.stderr.write(`token: ${message}\n`);
  process.exit(1);
});
