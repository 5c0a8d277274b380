import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type CaConnector,
  CaConnectorSchema,
  type ConnectorType,
  ConnectorTypeSchema,
} from "../../gen/caconnector/v1/caconnector_pb.js";
import type {
  ConnectorTypeView,
  ConnectorView,
} from "../domain/connector-service.js";

/** The wire form of a connector. */
export function connectorMessage(view: ConnectorView): CaConnector {
  return create(CaConnectorSchema, {
    id: BigInt(view.id),
    name: view.name,
    type: view.type,
    data: view.data,
    descriptions: view.descriptions,
    templates: view.templates,
    revision: BigInt(view.revision),
    createTime: timestampFromDate(view.createTime),
    updateTime: timestampFromDate(view.updateTime),
  });
}

/** The wire form of a connector type. */
export function connectorTypeMessage(view: ConnectorTypeView): ConnectorType {
  return create(ConnectorTypeSchema, {
    name: view.name,
    description: view.description,
    fields: view.fields,
  });
}

/**
 * Narrows an int64 from the wire to a safe JS number; revisions and ids
 * beyond 2^53 cannot exist in our stores, so a larger value is a client error
 * reported by the caller.
 */
export function toSafeNumber(value: bigint): number | undefined {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) &&
    value >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(value)
    : undefined;
}
