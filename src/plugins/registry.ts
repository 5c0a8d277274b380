import type { ConnectorTypePlugin } from "./plugin.js";

/** Resolves connector types by name. */
export class PluginRegistry {
  readonly #plugins = new Map<string, ConnectorTypePlugin>();

  constructor(plugins: Iterable<ConnectorTypePlugin> = []) {
    for (const plugin of plugins) {
      this.register(plugin);
    }
  }

  /** Adds a type; a second type with the same name is a programming error. */
  register(plugin: ConnectorTypePlugin): void {
    if (this.#plugins.has(plugin.name)) {
      throw new Error(`connector type "${plugin.name}" is registered twice`);
    }
    this.#plugins.set(plugin.name, plugin);
  }

  /** The type with this exact name, if registered. */
  get(name: string): ConnectorTypePlugin | undefined {
    return this.#plugins.get(name);
  }

  /** Every registered type, ordered by name. */
  list(): ConnectorTypePlugin[] {
    return [...this.#plugins.values()].sort((a, b) =>
      a.name.localeCompare(b.name),
    );
  }

  /** Releases what every type holds (connections, caches), at shutdown. */
  close(): void {
    for (const plugin of this.#plugins.values()) {
      plugin.close?.();
    }
  }

  /** Names of every registered type, ordered. */
  names(): string[] {
    return this.list().map((plugin) => plugin.name);
  }
}
