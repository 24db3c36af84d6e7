import type { SerializerName, TransportName } from "../../src/rpc/protocol/types.ts";
import { runLockConformance } from "../conformance/lock-conformance.ts";
import { runStoreConformance } from "../conformance/store-conformance.ts";
import {
  lockShard,
  type Stack,
  serializers,
  startStack,
  storeShard,
  testLimits,
  transports,
} from "./harness.ts";

/** Connects before the suite starts: its "answers at once" tests allow no time for a connect. */
async function warmStack(transport: TransportName, serializer: SerializerName): Promise<Stack> {
  const stack = await startStack(transport, serializer);
  await stack.client.info(storeShard);
  return stack;
}

// The same contract as the local store and lock manager, through every transport × serializer.
for (const transport of transports) {
  for (const serializer of serializers) {
    runStoreConformance(`RpcClient ${transport}/${serializer}`, async () => {
      const stack = await startStack(transport, serializer);
      return {
        store: stack.client.store(storeShard),
        clock: stack.clock,
        limits: testLimits,
        close: stack.close,
      };
    });
    runLockConformance(`RpcClient ${transport}/${serializer}`, async () => {
      const stack = await warmStack(transport, serializer);
      return { locks: stack.client.locks(lockShard), clock: stack.clock, close: stack.close };
    });
  }
}
