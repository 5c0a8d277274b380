import { randomBytes } from "node:crypto";
import { SignJWT } from "jose";

/** Claims of a token in the form privacyIDEA's `/auth` issues. */
export interface TokenClaims {
  username: string;
  /** "" for a local admin. */
  realm: string;
  role: "admin" | "user";
  validitySeconds: number;
}

/**
 * Signs an HS256 token with the claims privacyIDEA puts into its own
 * (`username`, `realm`, `nonce`, `role`, `authtype`, `exp`), so a token from
 * either side is accepted by the other when they share the secret.
 */
export async function mintAdminToken(
  secret: string,
  claims: TokenClaims,
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    username: claims.username,
    realm: claims.realm,
    nonce: randomBytes(20).toString("hex"),
    role: claims.role,
    authtype: "password",
    rights: [],
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setExpirationTime(now + claims.validitySeconds)
    .sign(new TextEncoder().encode(secret));
}
