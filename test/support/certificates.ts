import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The password the encrypted client key is protected with. */
export const clientKeyPassword = "worker-key-secret";

/** Paths of PEM files for mutual TLS between the service and a worker. */
export interface TestCertificates {
  /** The directory holding every file; removed by `remove()`. */
  dir: string;
  /** The CA that signed the worker's and the client's certificates. */
  caCert: string;
  /** The worker's certificate, for localhost and 127.0.0.1. */
  serverCert: string;
  serverKey: string;
  clientCert: string;
  /** The client key as plain PKCS#8. */
  clientKey: string;
  /** The same client key as PKCS#8 encrypted with `clientKeyPassword`. */
  clientKeyEncrypted: string;
  clientKeyPassword: string;
  /** A CA that signed nothing here, to make a client distrust the worker. */
  otherCaCert: string;
  remove(): Promise<void>;
}

/**
 * Generates a CA, a worker certificate and a client certificate signed by
 * it, the client key plain and encrypted, and an unrelated second CA, with
 * the openssl command line tool in a fresh temporary directory.
 */
export async function createTestCertificates(): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), "caconnector-certs-"));
  const path = (name: string) => join(dir, name);
  try {
    await selfSigned(dir, "ca", "caconnector test CA");
    await selfSigned(dir, "other-ca", "caconnector unrelated CA");
    await signed(dir, "server", "localhost", [
      "subjectAltName = DNS:localhost, IP:127.0.0.1",
      "extendedKeyUsage = serverAuth",
    ]);
    await signed(dir, "client", "caconnector client", [
      "extendedKeyUsage = clientAuth",
    ]);
    await openssl(dir, [
      "pkcs8",
      "-topk8",
      "-v2",
      "aes-256-cbc",
      "-in",
      "client-key.pem",
      "-out",
      "client-key-encrypted.pem",
      "-passout",
      `pass:${clientKeyPassword}`,
    ]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    caCert: path("ca-cert.pem"),
    serverCert: path("server-cert.pem"),
    serverKey: path("server-key.pem"),
    clientCert: path("client-cert.pem"),
    clientKey: path("client-key.pem"),
    clientKeyEncrypted: path("client-key-encrypted.pem"),
    clientKeyPassword,
    otherCaCert: path("other-ca-cert.pem"),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Writes `<name>-key.pem` (PKCS#8, P-256) and a CA `<name>-cert.pem`. */
async function selfSigned(dir: string, name: string, subject: string) {
  await newKey(dir, name);
  await openssl(dir, [
    "req",
    "-x509",
    "-new",
    "-key",
    `${name}-key.pem`,
    "-out",
    `${name}-cert.pem`,
    "-days",
    "2",
    "-subj",
    `/CN=${subject}`,
    "-addext",
    "basicConstraints = critical, CA:TRUE",
    "-addext",
    "keyUsage = critical, keyCertSign, cRLSign",
  ]);
}

/** Writes `<name>-key.pem` and `<name>-cert.pem` signed by the test CA. */
async function signed(
  dir: string,
  name: string,
  subject: string,
  extensions: string[],
) {
  await newKey(dir, name);
  await openssl(dir, [
    "req",
    "-new",
    "-key",
    `${name}-key.pem`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${subject}`,
  ]);
  const extfile = `${name}.ext`;
  await writeFile(join(dir, extfile), `${extensions.join("\n")}\n`);
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca-cert.pem",
    "-CAkey",
    "ca-key.pem",
    "-CAcreateserial",
    "-out",
    `${name}-cert.pem`,
    "-days",
    "2",
    "-extfile",
    extfile,
  ]);
}

async function newKey(dir: string, name: string) {
  // NOTE: genpkey writes PKCS#8, the form the worker client must read.
  await openssl(dir, [
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-out",
    `${name}-key.pem`,
  ]);
}

async function openssl(dir: string, args: string[]) {
  await run("openssl", args, { cwd: dir });
}
