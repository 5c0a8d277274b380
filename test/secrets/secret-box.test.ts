import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  parseSecretKeys,
  SecretBox,
  SecretDecryptError,
} from "../../src/secrets/secret-box.js";

function newKey(): string {
  return randomBytes(32).toString("base64");
}

const owner = { connector: "ca1", field: "ssl_client_key_password" };

describe("SecretBox", () => {
  it("round-trips a secret for the same owner", () => {
    const box = new SecretBox(parseSecretKeys(newKey(), "test"));
    const sealed = box.encrypt("s3cr3t ünïcode", owner);
    expect(sealed).toMatch(/^enc:v1:[0-9a-f]{8}:[A-Za-z0-9_-]+$/);
    expect(sealed).not.toContain("s3cr3t");
    expect(box.decrypt(sealed, owner)).toBe("s3cr3t ünïcode");
  });

  it("uses a fresh nonce for every encryption", () => {
    const box = new SecretBox(parseSecretKeys(newKey(), "test"));
    expect(box.encrypt("same", owner)).not.toBe(box.encrypt("same", owner));
  });

  it("refuses a ciphertext moved to another connector or field", () => {
    const box = new SecretBox(parseSecretKeys(newKey(), "test"));
    const sealed = box.encrypt("pw", owner);
    expect(() => box.decrypt(sealed, { ...owner, connector: "ca2" })).toThrow(
      SecretDecryptError,
    );
    expect(() => box.decrypt(sealed, { ...owner, field: "other" })).toThrow(
      SecretDecryptError,
    );
  });

  it("refuses a tampered ciphertext", () => {
    const box = new SecretBox(parseSecretKeys(newKey(), "test"));
    const sealed = box.encrypt("pw", owner);
    const last = sealed.at(-2) === "A" ? "B" : "A";
    const tampered = `${sealed.slice(0, -2)}${last}${sealed.at(-1)}`;
    expect(() => box.decrypt(tampered, owner)).toThrow(SecretDecryptError);
  });

  it("decrypts with an older key after rotation and encrypts with the first", () => {
    const oldKey = `old:${newKey()}`;
    const before = new SecretBox(parseSecretKeys(oldKey, "test"));
    const sealed = before.encrypt("pw", owner);
    const after = new SecretBox(
      parseSecretKeys(`new:${newKey()},${oldKey}`, "test"),
    );
    expect(after.decrypt(sealed, owner)).toBe("pw");
    expect(after.encrypt("pw", owner)).toMatch(/^enc:v1:new:/);
  });

  it("reseals a secret of an older key under the first", () => {
    const oldKey = `old:${newKey()}`;
    const sealed = new SecretBox(parseSecretKeys(oldKey, "test")).encrypt(
      "pw",
      owner,
    );
    const box = new SecretBox(
      parseSecretKeys(`new:${newKey()},${oldKey}`, "test"),
    );
    expect(box.keyIdOf(sealed)).toBe("old");

    const resealed = box.reseal(sealed, owner);

    expect(box.keyIdOf(resealed)).toBe("new");
    expect(box.currentKeyId).toBe("new");
    expect(box.decrypt(resealed, owner)).toBe("pw");
  });

  it("keeps a secret of the first key as it is when resealing", () => {
    const box = new SecretBox(parseSecretKeys(`k:${newKey()}`, "test"));
    const sealed = box.encrypt("pw", owner);
    expect(box.reseal(sealed, owner)).toBe(sealed);
  });

  it("refuses to reseal what no configured key opens, naming the owner", () => {
    const box = new SecretBox(parseSecretKeys(`a:${newKey()}`, "test"));
    const other = new SecretBox(parseSecretKeys(`b:${newKey()}`, "test"));
    const sealed = other.encrypt("pw", owner);
    expect(() => box.reseal(sealed, owner)).toThrow(SecretDecryptError);
    try {
      box.reseal(sealed, owner);
    } catch (err) {
      expect((err as SecretDecryptError).owner).toEqual(owner);
    }
    const ownSealed = box.encrypt("pw", owner);
    expect(() => box.reseal(ownSealed, { ...owner, field: "x" })).toThrow(
      SecretDecryptError,
    );
  });

  it("reads no key id from a malformed value", () => {
    const box = new SecretBox(parseSecretKeys(newKey(), "test"));
    expect(box.keyIdOf("plain text")).toBeUndefined();
    expect(box.keyIdOf("enc:v2:a:b")).toBeUndefined();
  });

  it("names the missing key id without showing any key", () => {
    const box = new SecretBox(parseSecretKeys(`a:${newKey()}`, "test"));
    const other = new SecretBox(parseSecretKeys(`b:${newKey()}`, "test"));
    expect(() => box.decrypt(other.encrypt("pw", owner), owner)).toThrow(
      /key id "b", which is not configured/,
    );
  });
});

describe("parseSecretKeys", () => {
  it("reads ids, bare keys, newlines and comments", () => {
    const text = `# rotation\nk2:${newKey()}\n${newKey()}\n`;
    const keys = parseSecretKeys(text, "SECRETS_KEY_FILE");
    expect(keys.map((key) => key.id)[0]).toBe("k2");
    expect(keys[1]?.id).toMatch(/^[0-9a-f]{8}$/);
    expect(keys.every((key) => key.key.length === 32)).toBe(true);
  });

  it("rejects a short key by position, never by value", () => {
    const short = randomBytes(16).toString("base64");
    expect(() =>
      parseSecretKeys(`${newKey()},${short}`, "SECRETS_KEY"),
    ).toThrow("SECRETS_KEY: key 2 must be 32 bytes in base64");
    try {
      parseSecretKeys(short, "SECRETS_KEY");
    } catch (err) {
      expect((err as Error).message).not.toContain(short);
    }
  });

  it("rejects an empty text and a repeated id", () => {
    expect(() => parseSecretKeys(" \n", "SECRETS_KEY")).toThrow("holds no key");
    expect(() =>
      parseSecretKeys(`a:${newKey()},a:${newKey()}`, "SECRETS_KEY"),
    ).toThrow("names a key id twice");
  });
});
