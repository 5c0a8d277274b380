import { type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** The reflection services, which callers reach without a token. */
export const reflectionServiceNames = [
  v1.ServerReflection.typeName,
  v1alpha.ServerReflection.typeName,
] as const;

/** A reflection request, alike in both protocol versions. */
type Query =
  | { case: "fileByFilename"; value: string }
  | { case: "fileContainingSymbol"; value: string }
  | {
      case: "fileContainingExtension";
      value: { containingType: string; extensionNumber: number };
    }
  | { case: "allExtensionNumbersOfType"; value: string }
  | { case: "listServices"; value: string }
  | { case: undefined; value?: undefined };

/** A reflection response, alike in both protocol versions. */
type Answer =
  | {
      case: "fileDescriptorResponse";
      value: { fileDescriptorProto: Uint8Array[] };
    }
  | {
      case: "allExtensionNumbersResponse";
      value: { baseTypeName: string; extensionNumber: number[] };
    }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | {
      case: "errorResponse";
      value: { errorCode: number; errorMessage: string };
    };

/** Everything reflection can tell, looked up by the keys clients ask with. */
interface Catalog {
  services: string[];
  filesByName: Map<string, DescFile>;
  filesBySymbol: Map<string, DescFile>;
  /** The full names of all messages, which alone can be extended. */
  messages: Set<string>;
  /** Extensions by the full name of the message they extend, then number. */
  extensions: Map<string, Map<number, DescFile>>;
  /** Each file serialized once, up front. */
  bytes: Map<DescFile, Uint8Array>;
}

/**
 * Registers gRPC server reflection, `grpc.reflection.v1` and its
 * predecessor `v1alpha` (which older clients still ask for), so that tools
 * such as grpcurl and `buf curl` can list and call `services` without the
 * protos. `files` adds descriptors beyond those of the services; the files
 * of the services, their imports and reflection's own come with them.
 */
export function registerReflection(
  router: ConnectRouter,
  files: DescFile[],
  services: DescService[],
): void {
  const reflection = [v1.ServerReflection, v1alpha.ServerReflection];
  const catalog = buildCatalog(
    [...files, ...[...services, ...reflection].map((s) => s.file)],
    [...services, ...reflection],
  );
  router.service(v1.ServerReflection, {
    serverReflectionInfo: (requests) => reflectionStream(catalog, requests),
  });
  router.service(v1alpha.ServerReflection, {
    serverReflectionInfo: (requests) => reflectionStream(catalog, requests),
  });
}

/** Answers the requests of one stream in order, each echoed back. */
async function* reflectionStream<
  Request extends { host: string; messageRequest: Query },
>(catalog: Catalog, requests: AsyncIterable<Request>) {
  const sent = new Set<DescFile>();
  for await (const request of requests) {
    yield {
      validHost: request.host,
      originalRequest: request,
      messageResponse: answer(catalog, request.messageRequest, sent),
    };
  }
}

/**
 * Answers one request of a stream. `sent` holds the files this stream has
 * already received, which clients keep, so only the asked-for file is sent
 * again and its imports are not.
 */
function answer(catalog: Catalog, query: Query, sent: Set<DescFile>): Answer {
  switch (query.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { service: catalog.services.map((name) => ({ name })) },
      };
    case "fileByFilename":
      return withImports(
        catalog.filesByName.get(query.value),
        "file_by_filename",
        catalog,
        sent,
      );
    case "fileContainingSymbol": {
      const symbol = query.value.replace(/^\./, "");
      return withImports(
        catalog.filesBySymbol.get(symbol),
        "file_containing_symbol",
        catalog,
        sent,
      );
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = query.value;
      const file = catalog.extensions
        .get(containingType.replace(/^\./, ""))
        ?.get(extensionNumber);
      return withImports(file, "file_containing_extension", catalog, sent);
    }
    case "allExtensionNumbersOfType":
      return extensionNumbers(catalog, query.value.replace(/^\./, ""));
    case undefined:
      return failure(Code.InvalidArgument, "message_request is not set");
  }
}

/**
 * The file first, then each of its transitive imports not yet sent, or
 * NOT_FOUND, blaming `field`, when there is no file.
 */
function withImports(
  file: DescFile | undefined,
  field: string,
  catalog: Catalog,
  sent: Set<DescFile>,
): Answer {
  if (file === undefined) {
    return failure(Code.NotFound, `${field} is unknown`);
  }
  const out: Uint8Array[] = [];
  const queue = [file];
  const seen = new Set<DescFile>(queue);
  for (let next = queue.shift(); next; next = queue.shift()) {
    if (next === file || !sent.has(next)) {
      out.push(catalog.bytes.get(next) ?? encode(next));
      sent.add(next);
    }
    for (const dependency of next.dependencies) {
      if (!seen.has(dependency)) {
        seen.add(dependency);
        queue.push(dependency);
      }
    }
  }
  return {
    case: "fileDescriptorResponse",
    value: { fileDescriptorProto: out },
  };
}

function extensionNumbers(catalog: Catalog, typeName: string): Answer {
  if (!catalog.messages.has(typeName)) {
    return failure(Code.NotFound, "all_extension_numbers_of_type is unknown");
  }
  const numbers = [...(catalog.extensions.get(typeName)?.keys() ?? [])];
  return {
    case: "allExtensionNumbersResponse",
    value: {
      baseTypeName: typeName,
      extensionNumber: numbers.sort((a, b) => a - b),
    },
  };
}

function failure(code: Code, message: string): Answer {
  return {
    case: "errorResponse",
    value: { errorCode: code, errorMessage: message },
  };
}

/** Indexes the files, all they import, and every symbol they declare. */
function buildCatalog(roots: DescFile[], services: DescService[]): Catalog {
  const catalog: Catalog = {
    services: [...new Set(services.map((s) => s.typeName))].sort(),
    filesByName: new Map(),
    filesBySymbol: new Map(),
    messages: new Set(),
    extensions: new Map(),
    bytes: new Map(),
  };
  const queue = [...roots];
  for (let file = queue.shift(); file; file = queue.shift()) {
    if (catalog.bytes.has(file)) {
      continue;
    }
    catalog.bytes.set(file, encode(file));
    catalog.filesByName.set(file.proto.name, file);
    indexSymbols(catalog, file);
    queue.push(...file.dependencies);
  }
  return catalog;
}

function indexSymbols(catalog: Catalog, file: DescFile): void {
  const symbols = catalog.filesBySymbol;
  for (const type of nestedTypes(file)) {
    symbols.set(type.typeName, file);
    switch (type.kind) {
      case "service":
        for (const method of type.methods) {
          symbols.set(`${type.typeName}.${method.name}`, file);
        }
        break;
      case "message":
        catalog.messages.add(type.typeName);
        for (const field of type.fields) {
          symbols.set(`${type.typeName}.${field.name}`, file);
        }
        break;
      case "extension": {
        const extendee = type.extendee.typeName;
        const numbers = catalog.extensions.get(extendee) ?? new Map();
        numbers.set(type.number, file);
        catalog.extensions.set(extendee, numbers);
        break;
      }
      case "enum":
        break;
    }
  }
}

function encode(file: DescFile): Uint8Array {
  return toBinary(FileDescriptorProtoSchema, file.proto);
}
