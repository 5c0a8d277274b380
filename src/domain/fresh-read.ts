/**
 * Shares calls of `read` between callers without ever answering one with a
 * read that started before it called: a caller that finds no read under way
 * starts one; callers that come while one is under way share the next one,
 * started as soon as that read settles. However many callers wait, at most
 * one read is under way and one more is queued.
 *
 * Reads of the store's generation go through it, so that many requests at
 * once cost one round trip to a remote store, not one each, while a write
 * acknowledged before a request arrived is still seen by that request.
 */
export function freshRead<T>(read: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  let queued: Promise<T> | undefined;

  const start = (): Promise<T> => {
    const settled: Promise<T> = Promise.resolve()
      .then(read)
      .finally(() => {
        if (running === settled) {
          running = undefined;
        }
      });
    running = settled;
    return settled;
  };

  return () => {
    if (!running) {
      return start();
    }
    if (!queued) {
      queued = running
        .then(
          () => undefined,
          () => undefined,
        )
        .then(() => {
          queued = undefined;
          return start();
        });
    }
    return queued;
  };
}
