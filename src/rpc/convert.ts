import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type CaConnector,
  CaConnectorSchema,
  type ConnectorType,
  ConnectorTypeSchema,
  type ListCaConnectorsResponse,
  ListCaConnectorsResponseSchema,
} from "../../gen/caconnector/v1/caconnector_pb.js";
import type {
  ConnectorTypeView,
  ConnectorView,
} from "../domain/connector-service.js";

// The domain hands out the same frozen views until something changes, so a
// message built from one stays right for as long as the view is in use.
const messages = new WeakMap<ConnectorView, CaConnector>();
const listResponses = new WeakMap<
  readonly ConnectorView[],
  ListCaConnectorsResponse
>();

/** The wire form of a connector, built once per view. */
export function connectorMessage(view: ConnectorView): CaConnector {
  let message = messages.get(view);
  if (!message) {
    message = buildConnectorMessage(view);
    messages.set(view, message);
  }
  return message;
}

/** The list response for views, built once per list the domain returns. */
export function listResponse(
  views: readonly ConnectorView[],
): ListCaConnectorsResponse {
  let response = listResponses.get(views);
  if (!response) {
    response = create(ListCaConnectorsResponseSchema, {
      connectors: views.map(connectorMessage),
    });
    listResponses.set(views, response);
  }
  return response;
}

function buildConnectorMessage(view: ConnectorView): CaConnector {
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
