import type { JsonObject } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "../../../gen/google/rpc/error_details_pb.js";

/** A connector as every client reports it, whatever its wire form. */
export interface Connector {
  id: number;
  name: string;
  type: string;
  data: Record<string, string>;
  descriptions: Record<string, string>;
  templates: JsonObject;
  revision: number;
  createTime: Date;
  updateTime: Date;
}

/** What a test asks a client to save. */
export interface SaveRequest {
  name: string;
  type: string;
  config?: Record<string, string>;
  descriptions?: Record<string, string>;
  expectedRevision?: number;
  validateOnly?: boolean;
}

/** The outcome of a save. */
export interface SaveOutcome {
  id: number;
  created: boolean;
  revision: number;
}

/** A connector type as ListConnectorTypes describes it. */
export interface ConnectorTypeInfo {
  name: string;
  description: string;
  fields: {
    key: string;
    type: string;
    required: boolean;
    secret: boolean;
    description: string;
  }[];
}

/**
 * The service seen through one client library and protocol, in one shape:
 * every method rejects with a ConnectError whose details hold the
 * `google.rpc.BadRequest` the server sent, so one table of assertions fits
 * every client.
 */
export interface CaConnectorClient {
  save(request: SaveRequest): Promise<SaveOutcome>;
  list(filter?: { name?: string; type?: string }): Promise<Connector[]>;
  get(name: string): Promise<Connector>;
  delete(name: string): Promise<number>;
  specificOptions(
    type: string,
    config: Record<string, string>,
  ): Promise<JsonObject>;
  types(): Promise<ConnectorTypeInfo[]>;
  close(): void;
}

/** The fields a ConnectError's `google.rpc.BadRequest` details name. */
export function violatedFields(error: ConnectError): string[] {
  return error
    .findDetails(BadRequestSchema)
    .flatMap((badRequest) =>
      badRequest.fieldViolations.map((violation) => violation.field),
    );
}

/** The descriptions of the violations a ConnectError carries, by field. */
export function violations(error: ConnectError): Record<string, string> {
  const byField: Record<string, string> = {};
  for (const badRequest of error.findDetails(BadRequestSchema)) {
    for (const violation of badRequest.fieldViolations) {
      byField[violation.field] = violation.description;
    }
  }
  return byField;
}

/** Awaits a call that must fail and returns its error as a ConnectError. */
export async function failureOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded, but a failure was expected");
}
