import {
  booleanSpellings,
  type ConnectorTypePlugin,
  type FieldSpec,
  type FieldViolation,
  type PlainConfig,
} from "./plugin.js";

const integerPattern = /^-?\d{1,15}$/;

/**
 * Violations for keys the type does not declare, naming the known keys so
 * that the caller can correct a typo without reading documentation.
 */
export function unknownKeyViolations(
  plugin: ConnectorTypePlugin,
  keys: Iterable<string>,
  prefix: string,
): FieldViolation[] {
  const known = new Set(plugin.fields.map((field) => field.key));
  const violations: FieldViolation[] = [];
  for (const key of keys) {
    if (!known.has(key)) {
      violations.push({
        field: `${prefix}.${key}`,
        description:
          `unknown key for type "${plugin.name}"; known keys: ` +
          [...known].join(", "),
      });
    }
  }
  return violations;
}

/** How much of a configuration `validateConfig` checks. */
export interface ValidateOptions {
  /** Path prefix of the fields in violations; "config" by default. */
  prefix?: string;
  /**
   * Check only keys and the values present, not required keys nor the
   * type's own checks: for a configuration that is inspected, not stored.
   */
  partial?: boolean;
}

/**
 * Checks a whole configuration against the type: unknown keys, required
 * keys, int and bool values, then the type's own checks. Values of secret
 * fields are only checked for presence, since they may be ciphertext.
 */
export function validateConfig(
  plugin: ConnectorTypePlugin,
  config: PlainConfig,
  options: ValidateOptions = {},
): FieldViolation[] {
  const prefix = options.prefix ?? "config";
  const partial = options.partial ?? false;
  const violations = unknownKeyViolations(plugin, Object.keys(config), prefix);
  for (const field of plugin.fields) {
    const problem = checkValue(field, config[field.key], partial);
    if (problem) {
      violations.push({
        field: `${prefix}.${field.key}`,
        description: problem,
      });
    }
  }
  if (violations.length > 0 || partial) {
    return violations;
  }
  return plugin.validate(config).map((violation) => ({
    field: `${prefix}.${violation.field}`,
    description: violation.description,
  }));
}

function checkValue(
  field: FieldSpec,
  value: string | undefined,
  partial: boolean,
) {
  if (value === undefined || value === "") {
    return field.required && !partial ? "is required" : undefined;
  }
  if (field.type === "int" && !integerPattern.test(value)) {
    return "must be an integer";
  }
  if (field.type === "bool" && !booleanSpellings.has(value)) {
    return "must be a boolean (1, 0, true, false, True or False)";
  }
  return undefined;
}
