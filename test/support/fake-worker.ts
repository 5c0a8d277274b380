import {
  create,
  type DescMessage,
  fromBinary,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  type handleUnaryCall,
  type MethodDefinition,
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import {
  type GetCAsReply,
  GetCAsReplySchema,
  type GetCAsRequest,
  GetCAsRequestSchema,
  type GetTemplatesReply,
  GetTemplatesReplySchema,
  type GetTemplatesRequest,
  GetTemplatesRequestSchema,
} from "../../gen/msca/caservice_pb.js";

/** The host every fake worker listens on. */
export const workerHost = "127.0.0.1";

/** The RPCs the fake worker answers. */
export type WorkerMethod = "GetCAs" | "GetTemplates";

/** What the fake worker answers; a test may change it at any time. */
export interface WorkerReplies {
  cas: string[];
  templates: string[];
  /** When set, every reply carries this worker Status and no names. */
  status: { code: number; message: string } | undefined;
}

/** PEM contents for a worker that demands a client certificate. */
export interface WorkerTls {
  /** The CA client certificates must be signed by. */
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** A running stand-in for the privacyIDEA MS CA worker. */
export interface FakeWorker {
  readonly port: number;
  /** Where the worker listens, as `host:port`. */
  readonly address: string;
  readonly replies: WorkerReplies;
  /** Calls received per method, answered or not. */
  readonly calls: Record<WorkerMethod, number>;
  /** The client address of every call, so a test can tell connections apart. */
  readonly peers: string[];
  /** The CA names GetTemplates was asked for, in order. */
  readonly templateRequests: string[];
  /** How many calls are being held unanswered. */
  readonly held: number;
  /** Holds every call from now on until `release()`. */
  hang(): void;
  /** Answers the held calls and stops holding. */
  release(): void;
  /** Restores the default replies, clears the counters, releases. */
  reset(): void;
  /**
   * Drops every connection, with the calls held, and stops listening; a
   * restarted worker answers at once.
   */
  stop(): Promise<void>;
  /** Listens again on the same port after `stop()`. */
  restart(): Promise<void>;
}

/** The replies a fresh worker gives. */
export function defaultReplies(): WorkerReplies {
  return {
    cas: ["WIN-CA01\\Example Issuing CA", "WIN-CA01\\Example Root CA"],
    templates: ["T1", "T2"],
    status: undefined,
  };
}

const service = {
  GetCAs: method("GetCAs", GetCAsRequestSchema, GetCAsReplySchema),
  GetTemplates: method(
    "GetTemplates",
    GetTemplatesRequestSchema,
    GetTemplatesReplySchema,
  ),
} satisfies ServiceDefinition;

/**
 * Starts a real gRPC `CAService` on 127.0.0.1 port 0, insecure or with
 * mutual TLS, answering GetCAs and GetTemplates from `replies`.
 */
export async function startFakeWorker(
  options: { tls?: WorkerTls } = {},
): Promise<FakeWorker> {
  const replies = defaultReplies();
  const calls: Record<WorkerMethod, number> = { GetCAs: 0, GetTemplates: 0 };
  const peers: string[] = [];
  const templateRequests: string[] = [];
  let held: (() => void)[] = [];
  let hanging = false;

  /** Answers now, or later when the worker hangs. */
  function answer(send: () => void) {
    if (hanging) {
      held.push(send);
    } else {
      send();
    }
  }

  const getCAs: handleUnaryCall<GetCAsRequest, GetCAsReply> = (
    call,
    callback,
  ) => {
    calls.GetCAs++;
    peers.push(call.getPeer());
    answer(() => {
      const { status } = replies;
      callback(
        null,
        create(GetCAsReplySchema, {
          caNames: status ? [] : replies.cas,
          status: status ?? { code: 0, message: "" },
        }),
      );
    });
  };

  const getTemplates: handleUnaryCall<
    GetTemplatesRequest,
    GetTemplatesReply
  > = (call, callback) => {
    calls.GetTemplates++;
    peers.push(call.getPeer());
    templateRequests.push(call.request.caName);
    answer(() => {
      const { status } = replies;
      callback(
        null,
        create(GetTemplatesReplySchema, {
          templateNames: status ? [] : replies.templates,
          status: status ?? { code: 0, message: "" },
        }),
      );
    });
  };

  const implementation: UntypedServiceImplementation = {
    GetCAs: getCAs,
    GetTemplates: getTemplates,
  };
  const credentials = options.tls
    ? ServerCredentials.createSsl(
        options.tls.ca,
        [{ cert_chain: options.tls.cert, private_key: options.tls.key }],
        true,
      )
    : ServerCredentials.createInsecure();

  let server = await listen(implementation, credentials, 0);
  const port = server.port;

  function release() {
    hanging = false;
    const waiting = held;
    held = [];
    for (const send of waiting) {
      send();
    }
  }

  return {
    port,
    address: `${workerHost}:${port}`,
    replies,
    calls,
    peers,
    templateRequests,
    get held() {
      return held.length;
    },
    hang() {
      hanging = true;
    },
    release,
    reset() {
      release();
      Object.assign(replies, defaultReplies());
      calls.GetCAs = 0;
      calls.GetTemplates = 0;
      peers.length = 0;
      templateRequests.length = 0;
    },
    async stop() {
      // The held calls die with their connections.
      held = [];
      hanging = false;
      server.server.forceShutdown();
    },
    async restart() {
      server = await listen(implementation, credentials, port);
    },
  };
}

/** A method of the worker's service, coded with protobuf-es. */
function method<I extends DescMessage, O extends DescMessage>(
  name: string,
  input: I,
  output: O,
): MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path: `/CAService/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value) => Buffer.from(toBinary(input, value)),
    requestDeserialize: (bytes) => fromBinary(input, bytes),
    responseSerialize: (value) => Buffer.from(toBinary(output, value)),
    responseDeserialize: (bytes) => fromBinary(output, bytes),
    originalName: name,
  };
}

/**
 * Binds a new server; a port just released by `stop()` may take a moment
 * to be free again, so binding a fixed port is retried briefly.
 */
async function listen(
  implementation: UntypedServiceImplementation,
  credentials: ServerCredentials,
  port: number,
): Promise<{ server: Server; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const server = new Server();
    server.addService(service, implementation);
    try {
      const bound = await new Promise<number>((resolve, reject) => {
        server.bindAsync(`${workerHost}:${port}`, credentials, (err, value) =>
          err ? reject(err) : resolve(value),
        );
      });
      return { server, port: bound };
    } catch (err) {
      server.forceShutdown();
      if (port === 0 || attempt >= 20) {
        throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
