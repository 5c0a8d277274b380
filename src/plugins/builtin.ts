import { localPlugin } from "./local.js";
import { createMicrosoftPlugin } from "./microsoft.js";
import { PluginRegistry } from "./registry.js";

/** A registry holding the types that ship with the service. */
export function builtinRegistry(): PluginRegistry {
  return new PluginRegistry([localPlugin, createMicrosoftPlugin()]);
}
