import type { JsonObject } from "@bufbuild/protobuf";
import { hostnameProblem, portProblem, WorkerPool } from "./msca-worker.js";
import {
  type ConnectorTypePlugin,
  type FieldSpec,
  type FieldViolation,
  fieldSpec,
  fingerprintOf,
  isTrue,
  type PlainConfig,
  type PluginContext,
} from "./plugin.js";

/** How long fetched templates are shown before they are fetched again. */
const templatesTtlMs = 60_000;

const fields: readonly FieldSpec[] = [
  fieldSpec(
    "hostname",
    "string",
    true,
    "host name or IP address of the MS CA worker",
  ),
  fieldSpec("port", "int", true, "gRPC port of the MS CA worker"),
  fieldSpec(
    "http_proxy",
    "bool",
    false,
    "connect through the proxy set in the environment",
  ),
  fieldSpec("ca", "string", false, "CA to use, as <hostname>\\<CA name>"),
  fieldSpec("use_ssl", "bool", false, "use mutual TLS to the worker"),
  fieldSpec(
    "ssl_ca_cert",
    "string",
    false,
    "path of the CA certificate that signed the worker's certificate",
  ),
  fieldSpec(
    "ssl_client_cert",
    "string",
    false,
    "path of the client certificate",
  ),
  fieldSpec(
    "ssl_client_key",
    "string",
    false,
    "path of the client key (PEM; PKCS#8 may be encrypted)",
  ),
  fieldSpec(
    "ssl_client_key_password",
    "password",
    false,
    "password of an encrypted client key",
  ),
];

const tlsFiles = ["ssl_ca_cert", "ssl_client_cert", "ssl_client_key"];

interface CachedTemplates {
  /** The configuration the templates were fetched with. */
  fingerprint: string;
  value: JsonObject;
  fetchedAt: number;
  refreshing: boolean;
}

/** What the microsoft type is built from. */
export interface MicrosoftPluginDeps {
  pool?: WorkerPool;
  now?: () => number;
}

/**
 * The `microsoft` type: a Microsoft CA in a Windows domain, reached through
 * the privacyIDEA MS CA worker over gRPC. Lists show the templates last
 * fetched from the worker and refresh them in the background, so a slow or
 * offline worker never holds up a read.
 */
export function createMicrosoftPlugin(
  deps: MicrosoftPluginDeps = {},
): ConnectorTypePlugin {
  const pool = deps.pool ?? new WorkerPool();
  const now = deps.now ?? Date.now;
  const cache = new Map<string, CachedTemplates>();

  async function fetchTemplates(
    config: PlainConfig,
    context: PluginContext,
  ): Promise<JsonObject> {
    const caName = config.ca ?? "";
    if (caName === "") {
      return {};
    }
    const names = await pool.getTemplates(
      context.connector,
      config,
      caName,
      context.timeoutMs,
    );
    return Object.fromEntries(names.map((name) => [name, ""]));
  }

  function refresh(
    entry: CachedTemplates,
    config: PlainConfig,
    context: PluginContext,
  ): void {
    entry.refreshing = true;
    fetchTemplates(config, context)
      .then((value) => {
        const changed = JSON.stringify(value) !== JSON.stringify(entry.value);
        entry.value = value;
        entry.fetchedAt = now();
        if (changed) {
          context.changed?.();
        }
      })
      .catch(() => {
        // NOTE: an unreachable worker keeps the last templates shown; the
        // failure reaches the operator through specific options instead.
        entry.fetchedAt = now();
      })
      .finally(() => {
        entry.refreshing = false;
      });
  }

  return {
    name: "microsoft",
    description: "a Microsoft CA reached through the privacyIDEA MS CA worker",
    fields,

    validate(config: PlainConfig): FieldViolation[] {
      const violations: FieldViolation[] = [];
      const hostProblem = hostnameProblem(config.hostname ?? "");
      if (hostProblem) {
        violations.push({ field: "hostname", description: hostProblem });
      }
      const portWrong = portProblem(config.port ?? "");
      if (portWrong) {
        violations.push({ field: "port", description: portWrong });
      }
      if (isTrue(config.use_ssl)) {
        for (const key of tlsFiles) {
          if (!config[key]) {
            violations.push({
              field: key,
              description: "is required with use_ssl",
            });
          }
        }
      }
      return violations;
    },

    async specificOptions(config, context): Promise<JsonObject> {
      const cas = await pool.getCAs(undefined, config, context.timeoutMs);
      return { available_cas: cas };
    },

    async templates(config, context): Promise<JsonObject> {
      const connector = context.connector;
      if (!connector) {
        return fetchTemplates(config, context);
      }
      const fingerprint = fingerprintOf(config);
      let entry = cache.get(connector);
      if (!entry || entry.fingerprint !== fingerprint) {
        entry = { fingerprint, value: {}, fetchedAt: 0, refreshing: false };
        cache.set(connector, entry);
      }
      if (!entry.refreshing && now() - entry.fetchedAt >= templatesTtlMs) {
        refresh(entry, config, context);
      }
      return entry.value;
    },

    async check(config, context): Promise<void> {
      await pool.getCAs(undefined, config, context.timeoutMs);
    },

    release(connector: string): void {
      cache.delete(connector);
      pool.release(connector);
    },

    close(): void {
      cache.clear();
      pool.close();
    },
  };
}
