/** Value types a connector configuration field can have. */
export type FieldType = "string" | "int" | "bool" | "password";
