import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";

/**
 * A TCP forwarder placed between the service and its database, so a test can
 * cut the wire the way a network partition does: no refusal, no reset, just
 * silence.
 */
export interface TcpProxy {
  port: number;
  /**
   * Stops forwarding. Open connections go silent, and new ones are accepted
   * but never answered.
   */
  freeze(): void;
  /**
   * Forwards again. The connections that went silent are reset, as a
   * partition that outlives TCP's patience leaves them; nothing sent into
   * the silence reaches the database later.
   */
  heal(): void;
  close(): Promise<void>;
}

interface Link {
  client: Socket;
  upstream?: Socket;
}

/** Starts a forwarder on a free loopback port to `targetPort`. */
export async function startTcpProxy(
  targetPort: number,
  targetHost = "127.0.0.1",
): Promise<TcpProxy> {
  let frozen = false;
  const open = new Set<Link>();
  const silent = new Set<Link>();

  const server = createServer((client) => {
    const link: Link = { client };
    client.on("error", () => destroy(link));
    if (frozen) {
      client.pause();
      silent.add(link);
      return;
    }
    const upstream = connect(targetPort, targetHost);
    link.upstream = upstream;
    upstream.on("error", () => destroy(link));
    client.on("close", () => destroy(link));
    upstream.on("close", () => destroy(link));
    client.pipe(upstream);
    upstream.pipe(client);
    open.add(link);
  });

  function destroy(link: Link): void {
    open.delete(link);
    silent.delete(link);
    link.client.destroy();
    link.upstream?.destroy();
  }

  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") {
    throw new Error("the proxy has no port");
  }

  return {
    port: address.port,
    freeze() {
      frozen = true;
      for (const link of open) {
        link.client.unpipe();
        link.upstream?.unpipe();
        link.client.pause();
        link.upstream?.pause();
        silent.add(link);
      }
      open.clear();
    },
    heal() {
      frozen = false;
      for (const link of [...silent]) {
        destroy(link);
      }
    },
    async close() {
      for (const link of [...open, ...silent]) {
        destroy(link);
      }
      server.close();
      await once(server, "close");
    },
  };
}
