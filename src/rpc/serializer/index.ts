import { DkvError } from "../../errors.ts";
import type { SerializerName } from "../protocol/types.ts";
import { BinarySerializer } from "./binary.ts";
import { JsonSerializer } from "./json.ts";
import type { MsgpackSerializer } from "./msgpack.ts";
import type { Serializer } from "./types.ts";

export { BinarySerializer } from "./binary.ts";
export { JsonSerializer } from "./json.ts";
export type { Serializer } from "./types.ts";

export function createSerializer(name: SerializerName): Serializer {
  switch (name) {
    case "binary":
      return new BinarySerializer();
    case "msgpack":
      return new (loadMsgpack())();
    case "json":
      return new JsonSerializer();
    default:
      throw new DkvError("USAGE", `unknown serializer "${String(name)}": use binary, msgpack or json`);
  }
}

/**
 * msgpackr (and its native addon) is loaded only when a msgpack serializer is made, so a
 * client or server on the default binary serializer starts without it. A synchronous
 * require keeps createSerializer synchronous; the module is evaluated once and cached.
 */
function loadMsgpack(): typeof MsgpackSerializer {
  const loaded: typeof import("./msgpack.ts") = require("./msgpack.ts");
  return loaded.MsgpackSerializer;
}
