import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { CaConnectorService } from "../../gen/caconnector/v1/caconnector_pb.js";
import type { ConnectorService } from "../domain/connector-service.js";
import { invalidArgument } from "../domain/errors.js";
import {
  connectorMessage,
  connectorTypeMessage,
  listResponse,
  toSafeNumber,
} from "./convert.js";

/**
 * Registers `CaConnectorService` on a Connect router. Each handler only
 * translates between messages and the domain service, which holds every rule.
 */
export function registerCaConnectorService(
  router: ConnectRouter,
  connectors: ConnectorService,
): void {
  router.service(CaConnectorService, {
    async listCaConnectors(request) {
      const views = await connectors.list({
        name: request.name,
        type: request.type,
      });
      return listResponse(views);
    },

    async getCaConnector(request) {
      const view = await connectors.get(request.name);
      return { connector: connectorMessage(view) };
    },

    async getSpecificOptions(request, context: HandlerContext) {
      const options = await connectors.specificOptions(
        request.type,
        request.config,
        context.signal,
      );
      return { options };
    },

    async saveCaConnector(request) {
      const expectedRevision = expectedRevisionOf(request.expectedRevision);
      const result = await connectors.save({
        name: request.name,
        type: request.type,
        config: request.config,
        descriptions: request.descriptions,
        expectedRevision,
        validateOnly: request.validateOnly,
      });
      return {
        id: BigInt(result.id),
        created: result.created,
        revision: BigInt(result.revision),
      };
    },

    async deleteCaConnector(request) {
      const id = await connectors.delete(request.name);
      return { id: BigInt(id) };
    },

    async listConnectorTypes() {
      return { types: connectors.types().map(connectorTypeMessage) };
    },
  });
}

function expectedRevisionOf(value: bigint | undefined): number | undefined {
  if (value === undefined) {
    return undefined;
  }
  const revision = toSafeNumber(value);
  if (revision === undefined) {
    throw invalidArgument([
      { field: "expected_revision", description: "is out of range" },
    ]);
  }
  return revision;
}
