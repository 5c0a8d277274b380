import {
  createCipheriv,
  createDecipheriv,
  createHash,
  randomBytes,
} from "node:crypto";

/** The value read back in place of a set secret. */
export const censored = "__CENSORED__";

const algorithm = "aes-256-gcm";
const prefix = "enc:v1";
const nonceBytes = 12;
const tagBytes = 16;

/** An encryption key and the id stored beside every ciphertext it made. */
export interface SecretKey {
  id: string;
  key: Buffer;
}

/** Where a secret belongs; bound into the ciphertext as associated data. */
export interface SecretOwner {
  connector: string;
  field: string;
}

/** A secret could not be decrypted with any configured key. */
export class SecretDecryptError extends Error {
  override readonly name = "SecretDecryptError";
  /** The secret that failed, so that a client can be told its field. */
  readonly owner: SecretOwner;

  constructor(message: string, owner: SecretOwner, options?: ErrorOptions) {
    super(message, options);
    this.owner = owner;
  }
}

/**
 * Encrypts connector secrets at rest with AES-256-GCM. The connector name and
 * field key are associated data, so a ciphertext copied to another connector
 * or field does not decrypt. The first key encrypts; every key decrypts,
 * which lets operators rotate by putting a new key first.
 */
export class SecretBox {
  readonly #keys: Map<string, Buffer>;
  readonly #current: SecretKey;

  constructor(keys: readonly SecretKey[]) {
    const [current] = keys;
    if (!current) {
      throw new Error("at least one secrets key is needed");
    }
    this.#current = current;
    this.#keys = new Map(keys.map((entry) => [entry.id, entry.key]));
  }

  /** Id of the key that encrypts new secrets. */
  get currentKeyId(): string {
    return this.#current.id;
  }

  /** Encrypts a secret into `enc:v1:<key id>:<base64url>`. */
  encrypt(plain: string, owner: SecretOwner): string {
    const nonce = randomBytes(nonceBytes);
    const cipher = createCipheriv(algorithm, this.#current.key, nonce);
    cipher.setAAD(associatedData(owner));
    const body = Buffer.concat([
      nonce,
      cipher.update(plain, "utf8"),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
    return `${prefix}:${this.#current.id}:${body.toString("base64url")}`;
  }

  /** Decrypts what `encrypt` made for the same owner. */
  decrypt(sealed: string, owner: SecretOwner): string {
    const parsed = parseSealed(sealed);
    if (!parsed) {
      throw new SecretDecryptError(
        `secret of ${describe(owner)} is malformed`,
        owner,
      );
    }
    const key = this.#keys.get(parsed.keyId);
    if (!key) {
      throw new SecretDecryptError(
        `secret of ${describe(owner)} uses key id "${parsed.keyId}", which is not configured`,
        owner,
      );
    }
    const body = Buffer.from(parsed.body, "base64url");
    if (body.length < nonceBytes + tagBytes) {
      throw new SecretDecryptError(
        `secret of ${describe(owner)} is malformed`,
        owner,
      );
    }
    try {
      const decipher = createDecipheriv(
        algorithm,
        key,
        body.subarray(0, nonceBytes),
      );
      decipher.setAAD(associatedData(owner));
      decipher.setAuthTag(body.subarray(body.length - tagBytes));
      const plain = decipher.update(
        body.subarray(nonceBytes, body.length - tagBytes),
      );
      return Buffer.concat([plain, decipher.final()]).toString("utf8");
    } catch (err) {
      throw new SecretDecryptError(
        `secret of ${describe(owner)} fails authentication`,
        owner,
        { cause: err },
      );
    }
  }

  /** Id of the key that sealed `sealed`, or undefined if it is malformed. */
  keyIdOf(sealed: string): string | undefined {
    return parseSealed(sealed)?.keyId;
  }

  /**
   * The secret sealed under the current key: `sealed` itself if that key
   * sealed it, else decrypted and sealed again, so that an old key can be
   * retired. It decrypts in either case, so that what it returns is known
   * to decrypt; it throws `SecretDecryptError` as `decrypt` does.
   */
  reseal(sealed: string, owner: SecretOwner): string {
    const plain = this.decrypt(sealed, owner);
    if (this.keyIdOf(sealed) === this.#current.id) {
      return sealed;
    }
    return this.encrypt(plain, owner);
  }
}

/** The key id and base64url body of `enc:v1:<key id>:<body>`, if it is one. */
function parseSealed(
  sealed: string,
): { keyId: string; body: string } | undefined {
  const [scheme, version, keyId, body, ...rest] = sealed.split(":");
  if (
    `${scheme}:${version}` !== prefix ||
    keyId === undefined ||
    body === undefined ||
    rest.length > 0
  ) {
    return undefined;
  }
  return { keyId, body };
}

/**
 * Parses keys from `SECRETS_KEY` or a key file: entries separated by commas
 * or newlines, each `<id>:<base64 key>` or a bare base64 key whose id is
 * derived from its hash. Throws an `AggregateError` with one error per bad
 * entry, each naming the entry by position only, never by value.
 */
export function parseSecretKeys(text: string, source: string): SecretKey[] {
  const entries = text
    .split(/[,\n]/)
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "" && !entry.startsWith("#"));
  if (entries.length === 0) {
    throw new Error(`${source} holds no key`);
  }
  // Every entry is checked, so that one start names all the bad ones.
  const keys: SecretKey[] = [];
  const errors: Error[] = [];
  entries.forEach((entry, index) => {
    try {
      keys.push(parseKey(entry, index, source));
    } catch (err) {
      errors.push(err as Error);
    }
  });
  if (new Set(keys.map((key) => key.id)).size !== keys.length) {
    errors.push(new Error(`${source} names a key id twice`));
  }
  if (errors.length > 0) {
    const message = errors.map((err) => err.message).join("; ");
    throw new AggregateError(errors, message);
  }
  return keys;
}

function parseKey(entry: string, index: number, source: string): SecretKey {
  const colon = entry.indexOf(":");
  const id = colon >= 0 ? entry.slice(0, colon) : undefined;
  const encoded = colon >= 0 ? entry.slice(colon + 1) : entry;
  const key = Buffer.from(encoded, "base64");
  if (key.length !== 32 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(encoded)) {
    throw new Error(
      `${source}: key ${index + 1} must be 32 bytes in base64 (openssl rand -base64 32)`,
    );
  }
  if (id !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(id)) {
    throw new Error(
      `${source}: key ${index + 1} has an id that is not 1-64 of [A-Za-z0-9_.-]`,
    );
  }
  return {
    id: id ?? createHash("sha256").update(key).digest("hex").slice(0, 8),
    key,
  };
}

function associatedData(owner: SecretOwner): Buffer {
  return Buffer.from(`caconnector\0${owner.connector}\0${owner.field}`, "utf8");
}

function describe(owner: SecretOwner): string {
  return `field "${owner.field}" of connector "${owner.connector}"`;
}
