import { defineConfig } from "vitest/config";

// NOTE: vitest reads its configuration from the default export.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Modules that build their own logger read LOG_LEVEL; tests stay quiet
    // unless a run asks for logs.
    env: { LOG_LEVEL: process.env.LOG_LEVEL ?? "silent" },
  },
});
