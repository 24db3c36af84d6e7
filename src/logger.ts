/**
 * The one logger of dkv. The composition root (src/server/) makes one instance and
 * passes it down; each part logs through `logger.forComponent("raft:host")`, so a line
 * says where it comes from. Lower layers take only the methods they call (`RaftLogger`,
 * `TransportLogger` are picks of this), so tests pass a recorder and libraries stay free
 * of any logging package.
 */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  /** The same sink, with `name` added to the component path (`raft` → `raft:host`). */
  forComponent(name: string): Logger;
}

/** Drops everything: the default of components that were given no logger. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  forComponent: () => silentLogger,
};
