import type { JsonObject } from "@bufbuild/protobuf";
import {
  type ConnectorTypePlugin,
  type FieldSpec,
  type FieldViolation,
  isTrue,
  type PlainConfig,
} from "./plugin.js";

const fields: readonly FieldSpec[] = [
  {
    key: "hostname",
    type: "string",
    required: true,
    description: "host of the MS CA worker",
  },
  {
    key: "port",
    type: "int",
    required: true,
    description: "gRPC port of the MS CA worker",
  },
  {
    key: "http_proxy",
    type: "bool",
    required: false,
    description: "connect through the proxy from the environment",
  },
  {
    key: "ca",
    type: "string",
    required: false,
    description: "CA to use, as <hostname>\\<CA name>",
  },
  {
    key: "use_ssl",
    type: "bool",
    required: false,
    description: "use mutual TLS to the worker",
  },
  {
    key: "ssl_ca_cert",
    type: "string",
    required: false,
    description:
      "path of the CA certificate that signed the worker's certificate",
  },
  {
    key: "ssl_client_cert",
    type: "string",
    required: false,
    description: "path of the client certificate",
  },
  {
    key: "ssl_client_key",
    type: "string",
    required: false,
    description:
      "path of the client private key (PEM, PKCS#8 may be encrypted)",
  },
  {
    key: "ssl_client_key_password",
    type: "password",
    required: false,
    description: "password of an encrypted client key",
  },
];

const tlsFiles = ["ssl_ca_cert", "ssl_client_cert", "ssl_client_key"];

/**
 * The `microsoft` type: a Microsoft CA in a Windows domain, reached through
 * the privacyIDEA MS CA worker over gRPC.
 */
export const microsoftPlugin: ConnectorTypePlugin = {
  name: "microsoft",
  description: "a Microsoft CA reached through the privacyIDEA MS CA worker",
  fields,

  validate(config: PlainConfig): FieldViolation[] {
    const violations: FieldViolation[] = [];
    const port = Number(config.port);
    if (!(port >= 1 && port <= 65535)) {
      violations.push({
        field: "port",
        description: "must be from 1 to 65535",
      });
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

  async specificOptions(config: PlainConfig): Promise<JsonObject> {
    // TODO(#5): ask the worker with GetCAs; until then the only CA known is
    // the one configured, so operators cannot pick from the worker's list.
    return { available_cas: config.ca ? [config.ca] : [] };
  },

  async templates(): Promise<JsonObject> {
    // TODO(#5): ask the worker with GetTemplates; until then list entries of
    // microsoft connectors show no templates.
    return {};
  },
};
