import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  calculateJwkThumbprint,
  decodeProtectedHeader,
  errors,
  exportJWK,
  type JWK,
  jwtVerify,
} from "jose";
import { AuthError } from "./errors.js";

/** The caller a valid token speaks for. */
export interface Admin {
  username: string;
  /** "" for a local admin, as privacyIDEA issues it. */
  realm: string;
  role: "admin" | "user";
}

/** A trusted signer's public key. */
interface TrustedKey {
  /** The JWK's `kid`, or the RFC 7638 thumbprint of a PEM key. */
  kid: string;
  key: KeyObject;
}

/** Algorithms accepted per key type; HS256 only ever uses the secret. */
const asymmetricAlgorithms: Record<string, readonly string[]> = {
  rsa: ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
  "rsa-pss": ["PS256", "PS384", "PS512"],
  ec: ["ES256", "ES384", "ES512"],
};

/** Verified tokens remembered at most; the oldest is forgotten first. */
const maxCachedTokens = 10_000;

const pemBlock = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----/g;

/**
 * Verifies admin tokens: HS256 with the secret shared with privacyIDEA, and
 * RS/PS/ES signatures by trusted public keys. The algorithm in the token's
 * header picks the key family, so an HS256 token is never checked against a
 * public key (the classic HS/RS confusion) and `alg: none` matches nothing.
 */
export class TokenVerifier {
  readonly #secret: Uint8Array | undefined;
  readonly #keys: readonly TrustedKey[];
  readonly #verified = new Map<string, { admin: Admin; expiresAt: number }>();

  constructor(secret: string | undefined, keys: readonly TrustedKey[] = []) {
    this.#secret = secret ? new TextEncoder().encode(secret) : undefined;
    this.#keys = keys;
  }

  /** Builds a verifier from the configured secret and public keys file. */
  static async fromConfig(config: {
    jwtSecret?: string;
    jwtPublicKeysFile?: string;
  }): Promise<TokenVerifier> {
    const keys = config.jwtPublicKeysFile
      ? await loadTrustedKeys(config.jwtPublicKeysFile)
      : [];
    return new TokenVerifier(config.jwtSecret, keys);
  }

  /**
   * Checks the token and returns its caller; throws `AuthError`. A token
   * that verified before is answered from memory until its `exp`, since a
   * signature check costs far more than the rest of a read.
   */
  async verify(token: string): Promise<Admin> {
    const known = this.#verified.get(token);
    if (known && known.expiresAt > Date.now()) {
      return known.admin;
    }
    const { admin, expiresAt } = await this.#verify(token);
    if (this.#verified.size >= maxCachedTokens) {
      // Oldest first: Map keeps insertion order.
      const oldest = this.#verified.keys().next();
      if (!oldest.done) {
        this.#verified.delete(oldest.value);
      }
    }
    this.#verified.set(token, { admin, expiresAt });
    return admin;
  }

  async #verify(token: string): Promise<{ admin: Admin; expiresAt: number }> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw malformed("the token is not a JWT");
    }
    const alg = header.alg ?? "";
    const candidates = this.#candidates(alg, header.kid);
    let lastError: unknown;
    for (const key of candidates) {
      try {
        const { payload } = await jwtVerify(token, key, {
          algorithms: [alg],
          requiredClaims: ["exp"],
        });
        return {
          admin: callerOf(payload),
          expiresAt: (payload.exp ?? 0) * 1000,
        };
      } catch (err) {
        if (err instanceof AuthError || err instanceof errors.JWTExpired) {
          throw toAuthError(err);
        }
        lastError = err;
      }
    }
    throw toAuthError(lastError);
  }

  #candidates(
    alg: string,
    kid: string | undefined,
  ): (Uint8Array | KeyObject)[] {
    if (alg === "HS256") {
      if (!this.#secret) {
        throw malformed("HS256 tokens are not accepted");
      }
      // The shared secret has no key id (privacyIDEA's tokens carry none),
      // so any kid names a key this service does not hold.
      if (kid !== undefined) {
        throw malformed(`key id "${kid}" is unknown`);
      }
      return [this.#secret];
    }
    const keys = this.#keys.filter((trusted) =>
      (
        asymmetricAlgorithms[trusted.key.asymmetricKeyType ?? ""] ?? []
      ).includes(alg),
    );
    if (keys.length === 0) {
      throw malformed(`algorithm "${alg}" is not accepted`);
    }
    if (kid === undefined) {
      return keys.map((trusted) => trusted.key);
    }
    const match = keys.filter((trusted) => trusted.kid === kid);
    if (match.length === 0) {
      throw malformed(`key id "${kid}" is unknown`);
    }
    return match.map((trusted) => trusted.key);
  }
}

/** Extracts the token: `PI-Authorization` wins over `Authorization`. */
export function tokenFromHeaders(headers: {
  get(name: string): string | null | undefined;
}): string | undefined {
  const raw = headers.get("pi-authorization") || headers.get("authorization");
  if (!raw) {
    return undefined;
  }
  const value = raw.trim();
  return /^bearer\s+/i.test(value) ? value.replace(/^bearer\s+/i, "") : value;
}

/**
 * Reads trusted signers from a JWKS document or from PEM blocks (public keys
 * or certificates). Throws with the file named when nothing usable is in it.
 */
export async function loadTrustedKeys(path: string): Promise<TrustedKey[]> {
  const text = await readFile(path, "utf8");
  const keys = text.trimStart().startsWith("{")
    ? await keysFromJwks(text, path)
    : await keysFromPem(text, path);
  if (keys.length === 0) {
    throw new Error(`${path}: no public key found`);
  }
  return keys;
}

async function keysFromJwks(text: string, path: string): Promise<TrustedKey[]> {
  let document: { keys?: unknown };
  try {
    document = JSON.parse(text) as { keys?: unknown };
  } catch {
    throw new Error(`${path}: not valid JSON`);
  }
  if (!Array.isArray(document.keys)) {
    throw new Error(`${path}: a JWKS needs a "keys" array`);
  }
  const keys: TrustedKey[] = [];
  for (const [index, jwk] of (document.keys as JWK[]).entries()) {
    if (jwk.d !== undefined || jwk.kty === "oct") {
      throw new Error(`${path}: key ${index + 1} is not a public key`);
    }
    let key: KeyObject;
    try {
      key = createPublicKey({ key: jwk as JsonWebKey, format: "jwk" });
    } catch {
      throw new Error(`${path}: key ${index + 1} is not a usable public key`);
    }
    keys.push({ kid: jwk.kid ?? (await calculateJwkThumbprint(jwk)), key });
  }
  return keys;
}

async function keysFromPem(text: string, path: string): Promise<TrustedKey[]> {
  const keys: TrustedKey[] = [];
  for (const [index, match] of [...text.matchAll(pemBlock)].entries()) {
    if (match[1]?.includes("PRIVATE")) {
      throw new Error(`${path}: block ${index + 1} is a private key`);
    }
    let key: KeyObject;
    try {
      key = createPublicKey(match[0]);
    } catch {
      throw new Error(
        `${path}: block ${index + 1} is not a public key or certificate`,
      );
    }
    keys.push({ kid: await calculateJwkThumbprint(await exportJWK(key)), key });
  }
  return keys;
}

function callerOf(payload: Record<string, unknown>): Admin {
  const { username, realm, role } = payload;
  if (typeof username !== "string" || username === "") {
    throw malformed('the token has no "username" claim');
  }
  if (realm !== undefined && typeof realm !== "string") {
    throw malformed('the "realm" claim is not a string');
  }
  if (role !== "admin" && role !== "user") {
    throw new AuthError(
      "role",
      "authentication failure: you do not have the necessary role (['admin']) to access this resource",
    );
  }
  return { username, realm: realm ?? "", role };
}

function malformed(reason: string): AuthError {
  return new AuthError(
    "malformed",
    `authentication failure: error decoding the authorization token: ${reason}`,
  );
}

function toAuthError(err: unknown): AuthError {
  if (err instanceof AuthError) {
    return err;
  }
  if (err instanceof errors.JWTExpired) {
    return new AuthError(
      "expired",
      "authentication failure: your token has expired",
    );
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    return malformed(`claim "${err.claim}" is invalid`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return malformed("signature verification failed");
  }
  return malformed("the token is not valid");
}
