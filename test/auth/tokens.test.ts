import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthError } from "../../src/auth/errors.js";
import { mintAdminToken } from "../../src/auth/mint.js";
import {
  loadTrustedKeys,
  TokenVerifier,
  tokenFromHeaders,
} from "../../src/auth/tokens.js";

const secret = "shared-with-privacyidea";
const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const stranger = generateKeyPairSync("rsa", { modulusLength: 2048 });
const claims = { username: "alice", realm: "", role: "admin" };
const hour = () => Math.floor(Date.now() / 1000) + 3600;

let dir = "";
let pemFile = "";
let jwksFile = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "caconnector-tokens-"));
  pemFile = join(dir, "signers.pem");
  await writeFile(
    pemFile,
    [
      rsa.publicKey.export({ type: "spki", format: "pem" }),
      ec.publicKey.export({ type: "spki", format: "pem" }),
    ].join("\n"),
  );
  jwksFile = join(dir, "jwks.json");
  const jwk = { ...(await exportJWK(rsa.publicKey)), kid: "signer-1" };
  await writeFile(jwksFile, JSON.stringify({ keys: [jwk] }));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(err instanceof AuthError)) {
    throw new Error(`expected an AuthError, got ${String(err)}`);
  }
  return err.failure;
}

describe("TokenVerifier with the shared secret", () => {
  const verifier = new TokenVerifier(secret);

  it("accepts a token in the format privacyIDEA issues", async () => {
    const token = await mintAdminToken(secret, {
      username: "admin",
      realm: "",
      role: "admin",
      validitySeconds: 60,
    });
    expect(await verifier.verify(token)).toEqual({
      username: "admin",
      realm: "",
      role: "admin",
    });
  });

  it("accepts a token signed like PyJWT does, with extra claims", async () => {
    const token = await new SignJWT({
      ...claims,
      realm: "realm1",
      nonce: "abc",
      authtype: "password",
      rights: ["enroll"],
    })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setExpirationTime(hour())
      .sign(new TextEncoder().encode(secret));
    expect((await verifier.verify(token)).realm).toBe("realm1");
  });

  it("rejects a bad signature, a missing or past exp, and garbage", async () => {
    const wrong = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime(hour())
      .sign(new TextEncoder().encode("another secret"));
    expect(await failure(verifier.verify(wrong))).toBe("malformed");

    const noExp = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(secret));
    expect(await failure(verifier.verify(noExp))).toBe("malformed");

    const expired = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime(Math.floor(Date.now() / 1000) - 10)
      .sign(new TextEncoder().encode(secret));
    expect(await failure(verifier.verify(expired))).toBe("expired");

    expect(await failure(verifier.verify("not.a.jwt"))).toBe("malformed");
    expect(await failure(verifier.verify(""))).toBe("malformed");
  });

  it("remembers a verified token only until it expires", async () => {
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime(Math.floor(Date.now() / 1000) + 1)
      .sign(new TextEncoder().encode(secret));
    expect((await verifier.verify(token)).username).toBe("alice");
    expect((await verifier.verify(token)).username).toBe("alice");
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await failure(verifier.verify(token))).toBe("expired");
  });

  it("never remembers a token that failed", async () => {
    const bad = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime(hour())
      .sign(new TextEncoder().encode("not the secret"));
    expect(await failure(verifier.verify(bad))).toBe("malformed");
    expect(await failure(verifier.verify(bad))).toBe("malformed");
  });

  it("rejects alg none", async () => {
    const token = new UnsecuredJWT(claims).setExpirationTime(hour()).encode();
    expect(await failure(verifier.verify(token))).toBe("malformed");
  });

  it("rejects a token without username or with an unknown role", async () => {
    const sign = (payload: Record<string, unknown>) =>
      new SignJWT(payload)
        .setProtectedHeader({ alg: "HS256" })
        .setExpirationTime(hour())
        .sign(new TextEncoder().encode(secret));
    expect(await failure(verifier.verify(await sign({ role: "admin" })))).toBe(
      "malformed",
    );
    expect(
      await failure(verifier.verify(await sign({ ...claims, role: "root" }))),
    ).toBe("role");
    expect(
      (await verifier.verify(await sign({ ...claims, role: "user" }))).role,
    ).toBe("user");
  });

  it("rejects an HS256 token with a kid, since the secret has none", async () => {
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256", typ: "JWT", kid: "secret-1" })
      .setExpirationTime(hour())
      .sign(new TextEncoder().encode(secret));
    const err = await verifier.verify(token).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(err).toBeInstanceOf(AuthError);
    expect(err).toMatchObject({
      failure: "malformed",
      message:
        'authentication failure: error decoding the authorization token: key id "secret-1" is unknown',
    });
  });

  it("rejects an HS256 token with an empty kid", async () => {
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256", kid: "" })
      .setExpirationTime(hour())
      .sign(new TextEncoder().encode(secret));
    expect(await failure(verifier.verify(token))).toBe("malformed");
  });

  it("rejects RS256 tokens when no public keys are configured", async () => {
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: "RS256" })
      .setExpirationTime(hour())
      .sign(rsa.privateKey);
    expect(await failure(verifier.verify(token))).toBe("malformed");
  });
});

describe("TokenVerifier with public keys", () => {
  it("accepts RS256, PS256 and ES256 tokens from PEM signers", async () => {
    const verifier = new TokenVerifier(
      undefined,
      await loadTrustedKeys(pemFile),
    );
    for (const [alg, key] of [
      ["RS256", rsa.privateKey],
      ["PS256", rsa.privateKey],
      ["ES256", ec.privateKey],
    ] as const) {
      const token = await new SignJWT(claims)
        .setProtectedHeader({ alg })
        .setExpirationTime(hour())
        .sign(key);
      expect((await verifier.verify(token)).username).toBe("alice");
    }
  });

  it("rejects a token from an untrusted signer", async () => {
    const verifier = new TokenVerifier(
      undefined,
      await loadTrustedKeys(pemFile),
    );
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: "RS256" })
      .setExpirationTime(hour())
      .sign(stranger.privateKey);
    expect(await failure(verifier.verify(token))).toBe("malformed");
  });

  it("matches JWKS keys by kid and rejects an unknown kid", async () => {
    const verifier = new TokenVerifier(
      undefined,
      await loadTrustedKeys(jwksFile),
    );
    const sign = (kid: string) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: "RS256", kid })
        .setExpirationTime(hour())
        .sign(rsa.privateKey);
    expect((await verifier.verify(await sign("signer-1"))).username).toBe(
      "alice",
    );
    expect(await failure(verifier.verify(await sign("signer-2")))).toBe(
      "malformed",
    );
  });

  it("rejects an HS256 token naming the kid of a trusted public key", async () => {
    const verifier = new TokenVerifier(secret, await loadTrustedKeys(jwksFile));
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256", kid: "signer-1" })
      .setExpirationTime(hour())
      .sign(new TextEncoder().encode(secret));
    expect(await failure(verifier.verify(token))).toBe("malformed");
    const plain = await mintAdminToken(secret, {
      username: "admin",
      realm: "",
      role: "admin",
      validitySeconds: 60,
    });
    expect((await verifier.verify(plain)).username).toBe("admin");
  });

  it("refuses HS256 signed with the public key (HS/RS confusion)", async () => {
    const pem = rsa.publicKey.export({ type: "spki", format: "pem" });
    const verifier = new TokenVerifier(
      undefined,
      await loadTrustedKeys(pemFile),
    );
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime(hour())
      .sign(new TextEncoder().encode(String(pem)));
    expect(await failure(verifier.verify(token))).toBe("malformed");
  });

  it("refuses a private key or an empty file as trusted signers", async () => {
    const privateFile = join(dir, "private.pem");
    await writeFile(
      privateFile,
      rsa.privateKey.export({ type: "pkcs8", format: "pem" }),
    );
    await expect(loadTrustedKeys(privateFile)).rejects.toThrow(
      "is a private key",
    );
    const emptyFile = join(dir, "empty.pem");
    await writeFile(emptyFile, randomBytes(8).toString("hex"));
    await expect(loadTrustedKeys(emptyFile)).rejects.toThrow(
      "no public key found",
    );
  });
});

describe("tokenFromHeaders", () => {
  const headers = (entries: Record<string, string>) => new Headers(entries);

  it("prefers PI-Authorization and strips Bearer", () => {
    expect(
      tokenFromHeaders(
        headers({ "PI-Authorization": "a.b.c", Authorization: "x.y.z" }),
      ),
    ).toBe("a.b.c");
    expect(tokenFromHeaders(headers({ Authorization: "Bearer x.y.z" }))).toBe(
      "x.y.z",
    );
    expect(tokenFromHeaders(headers({ Authorization: "bearer  x.y.z" }))).toBe(
      "x.y.z",
    );
    expect(tokenFromHeaders(headers({ Authorization: "x.y.z" }))).toBe("x.y.z");
    expect(tokenFromHeaders(headers({}))).toBeUndefined();
  });
});
