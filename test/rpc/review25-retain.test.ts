import { afterAll, expect, test } from "bun:test";
import { type Stack, startStack, storeShard } from "./harness.ts";

// review25: the client hands each call's resolvers over through two fields (one executor
// for every promise); those fields must not keep the last call's promise, and so its
// result, alive once the call is done.

const stacks: Stack[] = [];
afterAll(async () => {
  for (const s of stacks) await s.close();
});

async function lastValueRef(stack: Stack): Promise<WeakRef<Uint8Array>> {
  const store = stack.client.store(storeShard);
  await store.set("big", new Uint8Array(1024 * 1024).fill(7));
  const value = await store.get("big");
  expect(value?.length).toBe(1024 * 1024);
  return new WeakRef(value!);
}

test("an idle client does not keep its last reply's value alive", async () => {
  const stack = await startStack("tcp", "binary");
  stacks.push(stack);
  const ref = await lastValueRef(stack);
  for (let i = 0; i < 20 && ref.deref() !== undefined; i++) {
    await Bun.sleep(1);
    Bun.gc(true);
  }
  expect(ref.deref()).toBeUndefined();
});
