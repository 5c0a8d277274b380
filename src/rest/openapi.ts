import { serviceVersion } from "./envelope.js";
import { restInternalMessage } from "./errors.js";

/** Where the OpenAPI document is served; no token is needed to read it. */
export const openApiPath = "/openapi.json";

type JsonObject = Record<string, unknown>;

/** The shape of a connector name, as the domain enforces it. */
const namePattern = "^[A-Za-z0-9_.-]+$";

/** The component name of the error answer of each status. */
const errorResponseNames: Record<string, string> = {
  "400": "BadRequest",
  "401": "Unauthorized",
  "403": "Forbidden",
  "404": "NotFound",
  "409": "Conflict",
  "413": "PayloadTooLarge",
  "500": "InternalError",
  "503": "StoreUnavailable",
};

/**
 * The OpenAPI 3.1 description of the privacyIDEA-compatible REST gateway:
 * routes, parameters, security schemes and both JSON envelopes, so that
 * clients can be generated from it and responses checked against it. A new
 * object is built on every call, so a caller may change it freely.
 */
export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: {
      title: "caconnector REST gateway",
      version: serviceVersion,
      license: { name: "Apache-2.0", identifier: "Apache-2.0" },
      description:
        "privacyIDEA-compatible CA connector endpoints. Every answer is a " +
        "JSON envelope: `result.status` is true and `result.value` holds the " +
        "value on success; on failure `result.error` holds privacyIDEA's " +
        "error number and message.",
    },
    tags: [{ name: "caconnector", description: "CA connectors" }],
    security: [{ piAuthorization: [] }, { bearerAuth: [] }],
    paths: paths(),
    components: {
      securitySchemes: securitySchemes(),
      parameters: parameters(),
      schemas: schemas(),
      responses: errorResponses(),
    },
  };
}

function paths(): JsonObject {
  return {
    "/caconnector": { get: listOperation("listCaConnectorsNoSlash") },
    "/caconnector/": { get: listOperation("listCaConnectors") },
    "/caconnector/specific/{catype}": { get: specificOperation() },
    "/caconnector/{name}": {
      parameters: [ref("parameters", "name")],
      get: getOperation(),
      post: saveOperation(),
      delete: deleteOperation(),
    },
    [openApiPath]: {
      get: {
        operationId: "getOpenApiDocument",
        summary: "This document",
        security: [],
        responses: {
          "200": {
            description: "The OpenAPI document of the REST gateway.",
            content: { "application/json": { schema: { type: "object" } } },
          },
        },
      },
    },
  };
}

function listOperation(operationId: string): JsonObject {
  return {
    operationId,
    tags: ["caconnector"],
    summary: "List every CA connector",
    description:
      "Connectors ordered by id, secrets censored. `GET /caconnector` and " +
      "`GET /caconnector/` answer alike.",
    responses: responses("ListResponse", ["401", "403", "500", "503"]),
  };
}

function getOperation(): JsonObject {
  return {
    operationId: "getCaConnector",
    tags: ["caconnector"],
    summary: "List the CA connector of this name",
    description:
      "A list with the one connector of this exact name, or an empty list " +
      "(still 200) when there is none.",
    responses: responses("ListResponse", ["400", "401", "403", "500", "503"]),
  };
}

function specificOperation(): JsonObject {
  return {
    operationId: "getSpecificOptions",
    tags: ["caconnector"],
    summary: "Type-specific options of a configuration that is not stored",
    description:
      "The query string is a configuration of the type, checked as far as " +
      "it goes: `local` answers the names in its templates file, " +
      "`microsoft` the CAs its worker offers.",
    parameters: [ref("parameters", "catype"), ref("parameters", "config")],
    responses: responses("SpecificOptionsResponse", [
      "400",
      "401",
      "403",
      "500",
      "503",
    ]),
  };
}

function saveOperation(): JsonObject {
  const body = { schema: ref("schemas", "SaveParameters") };
  return {
    operationId: "saveCaConnector",
    tags: ["caconnector"],
    summary: "Create the CA connector or update the keys given",
    description:
      "Parameters may come from the query string, a form body or a JSON " +
      "body, merged with the body winning over the query. `type` is " +
      "required wherever it comes from. Keys not given keep their stored " +
      "value. The answer is the connector's id, the same on every update " +
      "(0 for `validate_only` of a connector that does not exist yet).",
    parameters: [ref("parameters", "config")],
    requestBody: {
      required: false,
      content: {
        "application/json": body,
        "application/x-www-form-urlencoded": body,
      },
    },
    responses: responses("IdResponse", [
      "400",
      "401",
      "403",
      "409",
      "413",
      "500",
      "503",
    ]),
  };
}

function deleteOperation(): JsonObject {
  return {
    operationId: "deleteCaConnector",
    tags: ["caconnector"],
    summary: "Delete the CA connector of this name",
    description: "The answer is the id the deleted connector had.",
    responses: responses("IdResponse", [
      "400",
      "401",
      "403",
      "404",
      "500",
      "503",
    ]),
  };
}

/** The 200 answer with the given envelope, then the listed error answers. */
function responses(success: string, errors: string[]): JsonObject {
  const answers: JsonObject = {
    "200": {
      description: "Success.",
      content: { "application/json": { schema: ref("schemas", success) } },
    },
  };
  for (const status of errors) {
    answers[status] = ref("responses", errorResponseNames[status] ?? "");
  }
  return answers;
}

function securitySchemes(): JsonObject {
  return {
    piAuthorization: {
      type: "apiKey",
      in: "header",
      name: "PI-Authorization",
      description:
        "A JWT as privacyIDEA's `/auth` issues it, raw or after `Bearer `. " +
        "It wins over `Authorization` when both are sent.",
    },
    bearerAuth: {
      type: "http",
      scheme: "bearer",
      bearerFormat: "JWT",
      description:
        "A JWT in `Authorization`, after `Bearer ` or raw as privacyIDEA " +
        "clients send it.",
    },
  };
}

function parameters(): JsonObject {
  return {
    name: {
      name: "name",
      in: "path",
      required: true,
      description: "The connector name; names are unique regardless of case.",
      schema: { type: "string", pattern: namePattern, maxLength: 255 },
    },
    catype: {
      name: "catype",
      in: "path",
      required: true,
      description: "A connector type.",
      schema: { type: "string", examples: ["local", "microsoft"] },
    },
    config: {
      name: "parameters",
      in: "query",
      required: false,
      style: "form",
      explode: true,
      description:
        "Free-form parameters: config keys of the type and, on save, the " +
        "control parameters of `SaveParameters`.",
      schema: { type: "object", additionalProperties: { type: "string" } },
    },
  };
}

function schemas(): JsonObject {
  return {
    ListEntry: listEntrySchema(),
    SpecificOptions: specificOptionsSchema(),
    SaveParameters: saveParametersSchema(),
    ListResponse: successSchema({
      type: "array",
      items: ref("schemas", "ListEntry"),
    }),
    SpecificOptionsResponse: successSchema(ref("schemas", "SpecificOptions")),
    IdResponse: successSchema({
      type: "integer",
      description: "The id of the connector.",
    }),
    ErrorResponse: errorSchema(),
  };
}

function listEntrySchema(): JsonObject {
  return {
    type: "object",
    required: ["connectorname", "type", "data", "templates", "id", "revision"],
    properties: {
      connectorname: { type: "string" },
      type: { type: "string", examples: ["local", "microsoft"] },
      data: {
        type: "object",
        description:
          "The config by key; a secret that is set reads `__CENSORED__`.",
        additionalProperties: { type: "string" },
      },
      templates: {
        type: "object",
        description:
          "Certificate templates by name: `{days, extensions}` for `local`, " +
          "`{}` when there are none or they cannot be read.",
      },
      id: { type: "integer" },
      revision: {
        type: "integer",
        description: "1 on create, one more on every write.",
      },
    },
  };
}

function specificOptionsSchema(): JsonObject {
  const names = { type: "array", items: { type: "string" } };
  return {
    type: "object",
    description: "Depends on the type; the keys the built-in types answer.",
    properties: { templates: names, available_cas: names },
  };
}

function saveParametersSchema(): JsonObject {
  return {
    type: "object",
    description:
      "Control parameters, `desc.<key>` and `type.<key>` entries, and every " +
      "other key as a config value of the type. JSON numbers and booleans " +
      'are stored as text: `443` as "443", `true` as "True".',
    properties: {
      type: {
        type: "string",
        minLength: 1,
        description: "The connector type; it cannot change once saved.",
        examples: ["local", "microsoft"],
      },
      expected_revision: {
        type: ["integer", "string"],
        description:
          "Save only if the stored revision is this one (0: only create).",
      },
      validate_only: {
        type: ["boolean", "string"],
        description: "Check and answer without storing.",
      },
      caconnector: {
        type: "string",
        description: "Ignored: the name comes from the path.",
      },
    },
    patternProperties: {
      "^desc\\.": {
        type: "string",
        description: "`desc.<key>`: the description of config key `<key>`.",
      },
      "^type\\.": {
        type: "string",
        enum: ["string", "int", "bool", "password"],
        description:
          "`type.<key>`: accepted only when it is the declared type of `<key>`.",
      },
    },
    additionalProperties: {
      type: ["string", "number", "boolean"],
      description:
        'A config value; a secret given as "__CENSORED__" keeps the stored ' +
        'one and "" clears it.',
    },
  };
}

function successSchema(value: JsonObject): JsonObject {
  return {
    type: "object",
    required: ["id", "jsonrpc", "result", "time", "version", "versionnumber"],
    properties: {
      ...envelopeProperties(),
      result: {
        type: "object",
        required: ["status", "value"],
        properties: { status: { type: "boolean", const: true }, value },
      },
      versionnumber: { type: "string", examples: [serviceVersion] },
    },
  };
}

function errorSchema(): JsonObject {
  return {
    type: "object",
    required: ["id", "jsonrpc", "detail", "result", "time", "version"],
    properties: {
      ...envelopeProperties(),
      detail: { type: "null" },
      result: {
        type: "object",
        required: ["status", "error"],
        properties: {
          status: { type: "boolean", const: false },
          error: {
            type: "object",
            required: ["code", "message"],
            properties: {
              code: {
                type: "integer",
                description: "privacyIDEA's error number.",
              },
              message: { type: "string" },
            },
          },
        },
      },
    },
  };
}

function envelopeProperties(): JsonObject {
  return {
    id: { type: "integer", const: 1 },
    jsonrpc: { type: "string", const: "2.0" },
    time: {
      type: "number",
      description: "When the answer was made, in seconds since the epoch.",
    },
    version: { type: "string", examples: [`caconnector ${serviceVersion}`] },
  };
}

function errorResponses(): JsonObject {
  return {
    BadRequest: errorResponse(
      "Invalid input (905); on specific options, also a CA worker or TLS " +
        "file that cannot be used (503).",
      {
        missingType: [905, "ERR905: Missing parameter: type"],
        invalid: [905, "ERR905: config.port: must be an integer"],
        specific: [
          503,
          "ERR503: the CA worker at worker.example:50061 is unreachable: it refused or dropped the connection",
        ],
      },
    ),
    Unauthorized: errorResponse("No token, or one that is not accepted.", {
      missing: [4033, "Authentication failure. Missing Authorization header."],
      malformed: [
        4304,
        "Authentication failure. Error decoding the Authorization token: the token is not a JWT",
      ],
      expired: [
        4305,
        "Authentication failure. Your token has expired: Signature has expired",
      ],
      role: [
        4306,
        "Authentication failure. You do not have the necessary role (['admin']) to access this resource!",
      ],
    }),
    Forbidden: errorResponse("No admin policy grants the action.", {
      policy: [
        303,
        "Admin actions are defined, but the action caconnectorwrite is not allowed!",
      ],
    }),
    NotFound: errorResponse("No connector of this name.", {
      notFound: [601, "The requested CAConnector could not be found."],
    }),
    Conflict: errorResponse("`expected_revision` is not the stored one.", {
      revision: [
        905,
        'ERR905: expected_revision: connector "ca1" has another revision; read it again',
      ],
    }),
    PayloadTooLarge: errorResponse("The body is over the size limit.", {
      tooLarge: [905, "ERR905: the body is larger than 1048576 bytes"],
    }),
    InternalError: errorResponse("An unexpected failure; see the log.", {
      internal: [-500, restInternalMessage],
    }),
    StoreUnavailable: errorResponse("The store does not answer.", {
      store: [902, "ERR902: store unavailable"],
    }),
  };
}

function errorResponse(
  description: string,
  examples: Record<string, [number, string]>,
): JsonObject {
  const named: JsonObject = {};
  for (const [name, [code, message]] of Object.entries(examples)) {
    named[name] = {
      value: {
        id: 1,
        jsonrpc: "2.0",
        detail: null,
        result: { status: false, error: { code, message } },
        time: 1767225600.123,
        version: `caconnector ${serviceVersion}`,
      },
    };
  }
  return {
    description,
    content: {
      "application/json": {
        schema: ref("schemas", "ErrorResponse"),
        examples: named,
      },
    },
  };
}

function ref(section: string, name: string): JsonObject {
  return { $ref: `#/components/${section}/${name}` };
}
