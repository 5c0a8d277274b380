import fc from "fast-check";

/** The config keys the built-in types know, and keys that trip up maps. */
export const knownKeys = [
  "cakey",
  "cacert",
  "openssl.cnf",
  "WorkingDir",
  "CSRDir",
  "CertificateDir",
  "CRL",
  "CRL_Validity_Period",
  "CRL_Overlap_Period",
  "templates",
  "hostname",
  "port",
  "http_proxy",
  "ca",
  "use_ssl",
  "ssl_ca_cert",
  "ssl_client_cert",
  "ssl_client_key",
  "ssl_client_key_password",
];

/** Property names every plain object inherits, or that rewrite one. */
export const prototypeKeys = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
];

/** Text of every kind: unicode, lone surrogates, control characters. */
export function anyText(maxLength = 40): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string({ maxLength }),
    fc.string({ unit: "grapheme", maxLength }),
    fc.string({ unit: "binary", maxLength }),
    fc
      .array(fc.integer({ min: 0, max: 0x1f }), { maxLength })
      .map((codes) => String.fromCharCode(...codes)),
  );
}

/** Connector names, from plausible to hostile. */
export function anyName(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.stringMatching(/^[A-Za-z0-9_.-]{1,40}$/),
    anyText(),
    fc.constantFrom(
      "",
      ".",
      "..",
      "../etc/passwd",
      "..%2F..%2Fetc",
      "%2F",
      "a/b",
      "a%2Fb",
      "a b",
      "a\u0000b",
      "naïve",
      "🔥",
      "CON",
      "x".repeat(255),
      "x".repeat(256),
      ...prototypeKeys,
    ),
    fc.string({ minLength: 256, maxLength: 3000 }),
  );
}

/** Connector types: the real ones in any case, and anything else. */
export function anyType(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom("local", "microsoft", "", "LOCAL", "Local", "local "),
    fc.constantFrom(...prototypeKeys),
    anyText(20),
  );
}

/** Config values: numbers in every spelling, paths, huge and odd text. */
export function anyValue(): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: anyText(60) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        "",
        "0",
        "-1",
        "65536",
        "1e309",
        "NaN",
        "Infinity",
        "0x10",
        "99999999999999999999",
        "True",
        "false",
        "yes",
        "__CENSORED__",
        "/dev/zero",
        "/dev/stdin",
        "/proc/self/fd/0",
        "/etc/passwd",
        "../../../../etc/shadow",
        ".",
        "/",
      ),
    },
    { weight: 1, arbitrary: fc.integer().map(String) },
    { weight: 1, arbitrary: fc.string({ minLength: 1000, maxLength: 20_000 }) },
  );
}

/** Config keys: known ones, prototype names, and anything else. */
export function anyKey(): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...knownKeys) },
    { weight: 1, arbitrary: fc.constantFrom(...prototypeKeys) },
    { weight: 2, arbitrary: anyText(30) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(...knownKeys).map((key) => `desc.${key}`),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(...knownKeys).map((key) => `type.${key}`),
    },
  );
}

/** A config map as protobuf maps carry it. */
export function anyConfig(): fc.Arbitrary<Record<string, string>> {
  return fc.dictionary(anyKey(), anyValue(), { maxKeys: 8 });
}

/**
 * Arbitrary JSON text, including nesting far deeper than any parser's stack
 * (built as text, since JSON.stringify would overflow first).
 */
export function anyJsonText(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.jsonValue({ maxDepth: 5 }).map((json) => JSON.stringify(json)),
    fc
      .integer({ min: 1, max: 200_000 })
      .map((depth) => `${"[".repeat(depth)}1${"]".repeat(depth)}`),
    fc
      .integer({ min: 1, max: 50_000 })
      .map(
        (depth) =>
          `${'{"type":"local","name":'.repeat(depth)}null${"}".repeat(depth)}`,
      ),
    fc
      .integer({ min: 1000, max: 50_000 })
      .map((width) => `[${"null,".repeat(width)}null]`),
  );
}

/** A JSON request for each RPC: right fields with wild values, or wrong ones. */
export function anyRpcJson(): fc.Arbitrary<Record<string, unknown>> {
  const wild = fc.oneof(
    { weight: 3, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  );
  const revision = fc.oneof(
    fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String),
    fc.integer({ min: -5, max: 5 }),
    fc.double(),
    fc.constantFrom("abc", "", "1.5", "0x1", null, true),
  );
  return fc
    .record(
      {
        name: fc.oneof(anyName(), wild),
        type: fc.oneof(anyType(), wild),
        config: fc.oneof(anyConfig(), wild),
        descriptions: fc.oneof(anyConfig(), wild),
        expectedRevision: revision,
        validateOnly: fc.oneof(fc.boolean(), wild),
        extra: wild,
      },
      { requiredKeys: [] },
    )
    .map(
      (record) => JSON.parse(JSON.stringify(record)) as Record<string, unknown>,
    );
}

/** Media types a client might send, right, wrong or broken. */
export function anyContentType(
  right: string[],
): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...right) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        undefined,
        "",
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin1",
        "APPLICATION/JSON",
        "application/vnd.api+json",
        "application/x-www-form-urlencoded",
        "application/proto",
        "application/grpc",
        "application/connect+json",
        ";;;",
      ),
    },
    { weight: 1, arbitrary: fc.stringMatching(/^[\x21-\x7e]{0,40}$/) },
  );
}

/** How a test mutates a good encoding into a bad one. */
export type Mutation =
  | { kind: "truncate"; at: number }
  | { kind: "flip"; at: number; bits: number }
  | { kind: "append"; bytes: Uint8Array }
  | { kind: "replace"; bytes: Uint8Array };

export function anyMutation(): fc.Arbitrary<Mutation> {
  return fc.oneof(
    fc.record({ kind: fc.constant("truncate"), at: fc.nat() }),
    fc.record({
      kind: fc.constant("flip"),
      at: fc.nat(),
      bits: fc.integer({ min: 1, max: 255 }),
    }),
    fc.record({
      kind: fc.constant("append"),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    }),
    fc.record({
      kind: fc.constant("replace"),
      bytes: fc.uint8Array({ maxLength: 256 }),
    }),
  ) as fc.Arbitrary<Mutation>;
}

/** Applies a mutation; positions wrap around the input. */
export function mutate(bytes: Uint8Array, mutation: Mutation): Uint8Array {
  switch (mutation.kind) {
    case "truncate":
      return bytes.subarray(0, mutation.at % (bytes.length + 1));
    case "flip": {
      const copy = Uint8Array.from(bytes);
      if (copy.length > 0) {
        const at = mutation.at % copy.length;
        copy[at] = (copy[at] ?? 0) ^ mutation.bits;
      }
      return copy;
    }
    case "append":
      return Uint8Array.from([...bytes, ...mutation.bytes]);
    case "replace":
      return mutation.bytes;
  }
}
