import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { isIPv6 } from "node:net";
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type CallOptions,
  type ChannelCredentials,
  Client,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import {
  GetCAsReplySchema,
  GetCAsRequestSchema,
  GetTemplatesReplySchema,
  GetTemplatesRequestSchema,
} from "../../gen/msca/caservice_pb.js";
import { fieldError } from "../domain/errors.js";
import { fingerprintOf, isTrue, type PlainConfig } from "./plugin.js";

/** How long a worker that failed is answered for without being asked. */
const cooldownMs = 5_000;

/** The settings that decide how to reach a worker. */
interface Target {
  address: string;
  useSsl: boolean;
  useProxy: boolean;
  files: { ca: string; cert: string; key: string };
  keyPassword: string;
}

interface Channel {
  /** Identity of the settings the channel was built from. */
  fingerprint: string;
  client: Client;
}

/**
 * Calls MS CA workers over gRPC. Channels are kept per connector and reused
 * until the connector's settings change or it is deleted, so a list does not
 * open a connection per call. A worker that failed to answer is reported
 * unavailable at once for a few seconds instead of being waited on again by
 * every request.
 */
export class WorkerPool {
  readonly #channels = new Map<string, Channel>();
  readonly #downUntil = new Map<string, number>();
  readonly #now: () => number;
  readonly #onCall: (outcome: "ok" | "unavailable" | "error") => void;

  constructor(
    now: () => number = Date.now,
    /** Told the outcome of every call that reached for a worker. */
    onCall: (outcome: "ok" | "unavailable" | "error") => void = () => {},
  ) {
    this.#now = now;
    this.#onCall = onCall;
  }

  /** The CA names the worker offers, as <hostname>\<CA name>. */
  async getCAs(
    owner: string | undefined,
    config: PlainConfig,
    timeoutMs: number,
  ): Promise<string[]> {
    const reply = await this.#call(
      owner,
      config,
      timeoutMs,
      "/CAService/GetCAs",
      GetCAsRequestSchema,
      {},
      GetCAsReplySchema,
    );
    checkStatus(reply.status);
    return reply.caNames;
  }

  /** The template names a CA of the worker offers. */
  async getTemplates(
    owner: string | undefined,
    config: PlainConfig,
    caName: string,
    timeoutMs: number,
  ): Promise<string[]> {
    const reply = await this.#call(
      owner,
      config,
      timeoutMs,
      "/CAService/GetTemplates",
      GetTemplatesRequestSchema,
      { caName },
      GetTemplatesReplySchema,
    );
    checkStatus(reply.status);
    return reply.templateNames;
  }

  /** Closes the channel of a connector that was changed or deleted. */
  release(owner: string): void {
    this.#channels.get(owner)?.client.close();
    this.#channels.delete(owner);
  }

  /** Closes every channel. */
  close(): void {
    for (const owner of [...this.#channels.keys()]) {
      this.release(owner);
    }
  }

  async #call<I extends DescMessage, O extends DescMessage>(
    owner: string | undefined,
    config: PlainConfig,
    timeoutMs: number,
    path: string,
    input: I,
    message: MessageInitShape<I>,
    output: O,
  ): Promise<MessageShape<O>> {
    const target = targetOf(config);
    // Keyed by all connection settings, not the address alone: an operator
    // who fixes a wrong CA file is not told "unreachable" from the cooldown
    // the broken settings earned.
    const fingerprint = fingerprintOf(target);
    const down = this.#downUntil.get(fingerprint) ?? 0;
    if (down > this.#now()) {
      this.#onCall("unavailable");
      throw unreachable(target.address, "did not answer recently");
    }
    const { client, temporary } = await this.#client(
      owner,
      target,
      fingerprint,
    );
    try {
      const reply = await unary(
        client,
        path,
        input,
        message,
        output,
        timeoutMs,
      );
      this.#onCall("ok");
      return reply;
    } catch (err) {
      this.#onCall(isUnreachable(err) ? "unavailable" : "error");
      if (isUnreachable(err)) {
        this.#downUntil.set(fingerprint, this.#now() + cooldownMs);
        if (owner) {
          // A fresh channel after the cooldown, rather than one whose
          // reconnect backoff has grown during the outage.
          this.release(owner);
        }
        throw unreachable(target.address, describe(err), err);
      }
      throw workerError(err);
    } finally {
      if (temporary) {
        client.close();
      }
    }
  }

  async #client(
    owner: string | undefined,
    target: Target,
    fingerprint: string,
  ) {
    const kept = owner ? this.#channels.get(owner) : undefined;
    if (kept && kept.fingerprint === fingerprint) {
      return { client: kept.client, temporary: false };
    }
    const creds = await credentialsOf(target);
    const raced = owner ? this.#channels.get(owner) : undefined;
    if (raced && raced.fingerprint === fingerprint) {
      // Another call built the same channel while we read the TLS files.
      return { client: raced.client, temporary: false };
    }
    // The explicit scheme keeps a host named like a scheme ("unix", "dns")
    // from being read as one.
    const client = new Client(`dns:${target.address}`, creds, {
      "grpc.enable_http_proxy": target.useProxy ? 1 : 0,
      // Own subchannels per channel, so one connector's reconnect backoff
      // is not shared with every other channel to the same address.
      "grpc.use_local_subchannel_pool": 1,
      "grpc.max_reconnect_backoff_ms": cooldownMs,
    });
    if (!owner) {
      return { client, temporary: true };
    }
    raced?.client.close();
    this.#channels.set(owner, { fingerprint, client });
    return { client, temporary: false };
  }
}

/** Host names (Unicode ones too) and IPv4 addresses: dot-separated labels. */
const hostNamePattern = /^[\p{L}\p{M}\p{N}_-]+(\.[\p{L}\p{M}\p{N}_-]+)*\.?$/u;

/**
 * Why a `hostname` setting cannot name a worker, or undefined when it can:
 * a host name, an IPv4 address, or an IPv6 address with or without brackets.
 */
export function hostnameProblem(hostname: string): string | undefined {
  if (isIPv6(unbracketed(hostname))) {
    return undefined;
  }
  if (hostname.length <= 253 && hostNamePattern.test(hostname)) {
    return undefined;
  }
  return "must be a host name or an IP address";
}

/** Why a `port` setting cannot name a worker, or undefined when it can. */
export function portProblem(port: string): string | undefined {
  const number = Number(port);
  return Number.isInteger(number) && number >= 1 && number <= 65535
    ? undefined
    : "must be from 1 to 65535";
}

function unbracketed(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/**
 * Reads how to reach the worker from a connector configuration; reports
 * missing and unusable settings by field.
 */
function targetOf(config: PlainConfig): Target {
  const missing = ["hostname", "port"].filter((key) => !config[key]);
  if (missing.length > 0) {
    throw fieldError(
      Code.FailedPrecondition,
      missing.map((key) => ({
        field: `config.${key}`,
        description: "is required to reach the worker",
      })),
    );
  }
  const host = unbracketed(config.hostname ?? "");
  const hostProblem = hostnameProblem(host);
  if (hostProblem) {
    throw precondition("hostname", hostProblem);
  }
  const port = config.port ?? "";
  const portWrong = portProblem(port);
  if (portWrong) {
    throw precondition("port", portWrong);
  }
  return {
    address: `${isIPv6(host) ? `[${host}]` : host}:${Number(port)}`,
    useSsl: isTrue(config.use_ssl),
    useProxy: isTrue(config.http_proxy),
    files: {
      ca: config.ssl_ca_cert ?? "",
      cert: config.ssl_client_cert ?? "",
      key: config.ssl_client_key ?? "",
    },
    keyPassword: config.ssl_client_key_password ?? "",
  };
}

async function credentialsOf(target: Target): Promise<ChannelCredentials> {
  if (!target.useSsl) {
    return credentials.createInsecure();
  }
  const [ca, cert, key] = await Promise.all([
    readTlsFile(target.files.ca, "ssl_ca_cert"),
    readTlsFile(target.files.cert, "ssl_client_cert"),
    readTlsFile(target.files.key, "ssl_client_key"),
  ]);
  try {
    new X509Certificate(ca);
  } catch {
    throw precondition("ssl_ca_cert", "is not a PEM certificate");
  }
  const plainKey = clientKey(key, target.keyPassword);
  try {
    return credentials.createSsl(ca, plainKey, cert);
  } catch {
    // grpc-js builds the TLS context here, which fails on a certificate
    // that is not PEM or does not belong to the key.
    throw precondition(
      "ssl_client_cert",
      "is not a PEM certificate of the client key",
    );
  }
}

async function readTlsFile(path: string, field: string): Promise<Buffer> {
  if (path === "") {
    throw precondition(field, "is required with use_ssl");
  }
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw precondition(field, `cannot read ${path} (${code})`);
  }
}

/** The client key in plain PKCS#8 PEM, decrypted with the password if set. */
function clientKey(pem: Buffer, password: string): Buffer {
  try {
    const key = createPrivateKey({
      key: pem,
      format: "pem",
      ...(password ? { passphrase: password } : {}),
    });
    return Buffer.from(key.export({ type: "pkcs8", format: "pem" }));
  } catch {
    throw precondition(
      password ? "ssl_client_key_password" : "ssl_client_key",
      password
        ? "does not decrypt the client key"
        : "is not a readable private key (or needs a password)",
    );
  }
}

function unary<I extends DescMessage, O extends DescMessage>(
  client: Client,
  path: string,
  input: I,
  message: MessageInitShape<I>,
  output: O,
  timeoutMs: number,
): Promise<MessageShape<O>> {
  const options: CallOptions = { deadline: Date.now() + timeoutMs };
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (value: MessageShape<I>) => Buffer.from(toBinary(input, value)),
      (bytes: Buffer) => fromBinary(output, bytes),
      create(input, message),
      new Metadata(),
      options,
      (err, reply) => (err || !reply ? reject(err) : resolve(reply)),
    );
  });
}

function isUnreachable(err: unknown): boolean {
  const code = (err as Partial<ServiceError> | undefined)?.code;
  // We never cancel calls ourselves: CANCELLED means the worker dropped the
  // connection while the call was in flight.
  return (
    code === status.UNAVAILABLE ||
    code === status.DEADLINE_EXCEEDED ||
    code === status.CANCELLED
  );
}

function describe(err: unknown): string {
  const code = (err as Partial<ServiceError> | undefined)?.code;
  return code === status.DEADLINE_EXCEEDED
    ? "did not answer in time"
    : "refused or dropped the connection";
}

function unreachable(
  address: string,
  why: string,
  cause?: unknown,
): ConnectError {
  return new ConnectError(
    `the CA worker at ${address} is unreachable: it ${why}`,
    Code.Unavailable,
    undefined,
    undefined,
    cause,
  );
}

function workerError(err: unknown): ConnectError {
  if (err instanceof ConnectError) {
    return err;
  }
  const detail = (err as Partial<ServiceError> | undefined)?.details;
  return new ConnectError(
    `the CA worker failed: ${detail ?? "unknown error"}`,
    Code.FailedPrecondition,
    undefined,
    undefined,
    err,
  );
}

function checkStatus(reply: { code: number; message: string } | undefined) {
  if (reply && reply.code !== 0) {
    throw new ConnectError(
      `the CA worker answered with error ${reply.code}: ${reply.message}`,
      Code.FailedPrecondition,
    );
  }
}

function precondition(field: string, description: string): ConnectError {
  return fieldError(Code.FailedPrecondition, [
    { field: `config.${field}`, description },
  ]);
}
