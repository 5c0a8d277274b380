import type { FieldViolation } from "../plugins/plugin.js";

const namePattern = /^[A-Za-z0-9_.-]+$/;

/** The longest connector name accepted. */
export const maxNameLength = 255;

/** What is wrong with a connector name, or undefined when it is good. */
export function nameViolation(
  name: string,
  field = "name",
): FieldViolation | undefined {
  if (name === "") {
    return { field, description: "is required" };
  }
  if (name.length > maxNameLength) {
    return {
      field,
      description: `must be at most ${maxNameLength} characters`,
    };
  }
  if (!namePattern.test(name)) {
    return {
      field,
      description: "may contain only letters, digits, '_', '.' and '-'",
    };
  }
  return undefined;
}
