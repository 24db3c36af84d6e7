export { ByteWriter } from "./byte-writer.ts";
export { type Endpoint, formatInet, parseEndpoint } from "./endpoint.ts";
export * from "./frame.ts";
export * from "./types.ts";
