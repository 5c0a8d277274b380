import type { ServerResponse } from "node:http";
import { setImmediate as nextTurn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { sendJsonSoon } from "../../src/server/respond.js";

/** A response that records what is written to it. */
function recordingResponse(state: { destroyed?: boolean } = {}) {
  const written: { status?: number; body?: string } = {};
  const response = {
    destroyed: state.destroyed ?? false,
    writableEnded: false,
    writeHead(status: number) {
      written.status = status;
    },
    end(body: string) {
      written.body = body;
    },
  };
  return { response: response as unknown as ServerResponse, written };
}

describe("sendJsonSoon", () => {
  it("sends every answer of a turn after that turn's I/O", async () => {
    const first = recordingResponse();
    const second = recordingResponse();

    sendJsonSoon(first.response, 200, '{"a":1}');
    sendJsonSoon(second.response, 404, '{"b":2}');
    expect(first.written).toEqual({});

    await nextTurn();
    expect(first.written).toEqual({ status: 200, body: '{"a":1}' });
    expect(second.written).toEqual({ status: 404, body: '{"b":2}' });
  });

  it("writes nothing to a client that went away before the turn ended", async () => {
    const gone = recordingResponse({ destroyed: true });

    sendJsonSoon(gone.response, 200, "{}");
    await nextTurn();

    expect(gone.written).toEqual({});
  });
});
