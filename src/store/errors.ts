/** A create collided with a connector whose name differs at most in case. */
export class NameTakenError extends Error {
  override readonly name = "NameTakenError";

  constructor(
    readonly connectorName: string,
    options?: ErrorOptions,
  ) {
    super(`a connector named like "${connectorName}" exists`, options);
  }
}

/** The database could not be reached or did not answer in time. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}
