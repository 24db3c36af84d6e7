import { DkvError } from "../../errors.ts";
import type { SerializerName } from "../protocol/types.ts";
import { BinarySerializer } from "./binary.ts";
import { JsonSerializer } from "./json.ts";
import { MsgpackSerializer } from "./msgpack.ts";
import type { Serializer } from "./types.ts";

export { BinarySerializer } from "./binary.ts";
export { JsonSerializer } from "./json.ts";
export { MsgpackSerializer } from "./msgpack.ts";
export type { Serializer } from "./types.ts";

export function createSerializer(name: SerializerName): Serializer {
  switch (name) {
    case "binary":
      return new BinarySerializer();
    case "msgpack":
      return new MsgpackSerializer();
    case "json":
      return new JsonSerializer();
    default:
      throw new DkvError("USAGE", `unknown serializer "${String(name)}": use binary, msgpack or json`);
  }
}
