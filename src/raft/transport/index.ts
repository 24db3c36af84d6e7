export { ByteQueue } from "./byte-queue.ts";
export {
  type DecodedFrame,
  decodeFramePayload,
  decodeMessage,
  encodeHandshake,
  encodeHostFrame,
  encodeMessage,
  encodeRaftFrame,
  encodeSnapshotBegin,
  encodeSnapshotChunk,
  FrameKind,
  frameHeaderBytes,
  type Handshake,
  PayloadReader,
  transportProtocolVersion,
  WireError,
} from "./codec.ts";
export { FrameSplitter, type PayloadSink } from "./frame-splitter.ts";
export type { TcpNodeTransportOptions, TcpTransportStats, TransportLogger } from "./options.ts";
export { TcpNodeTransport } from "./tcp-transport.ts";
export type { NodeTransport, NodeTransportHandlers } from "./types.ts";
