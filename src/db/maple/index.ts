export type { MapleOptions } from "./maple-db.ts";
export { MapleDB } from "./maple-db.ts";
export { SNAPSHOT_VERSION } from "./snapshot-codec.ts";
