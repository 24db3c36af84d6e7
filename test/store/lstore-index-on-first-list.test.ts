import { describe, expect, test } from "bun:test";
import { MapleDB } from "../../src/db/maple/index.ts";
import { LocalStore, lstoreEngine } from "../../src/store/local.ts";

/**
 * An lstore (a cache, compared with Redis by bytes per key and CPU per insert) keeps no
 * ordered index until it is first listed; the replicated store's engine keeps one from
 * its first write (README "Ordered index from the first write").
 */
describe("lstore: the ordered index waits for the first list", () => {
  test("writes before any list note nothing; the first list builds it; later writes fold into it", async () => {
    const db = lstoreEngine();
    const store = new LocalStore({ db });
    for (let i = 0; i < 2_000; i++) await store.set(`k/${String(i).padStart(5, "0")}`, "v");
    expect(db.orderReady()).toBe(false);
    expect(db.orderStats.builds).toBe(0);
    expect(db.orderStats.folded).toBe(0);

    const page = await store.list({ prefix: "k/", limit: 3, keysOnly: true });
    expect(page.items.map((item) => item.key)).toEqual(["k/00000", "k/00001", "k/00002"]);
    expect(db.orderStats.builds).toBe(1);

    await store.set("k/-first", "v");
    await store.delete("k/00000");
    const next = await store.list({ prefix: "k/", limit: 2, keysOnly: true });
    expect(next.items.map((item) => item.key)).toEqual(["k/-first", "k/00001"]);
    expect(db.orderStats.builds).toBe(1);
    expect(db.orderStats.folded).toBeGreaterThan(0);
    await store.close();
  });

  test("the replicated store's engine (a MapleDB by default) keeps its index from the start", async () => {
    for (const [db, builds] of [
      [new MapleDB(), 0],
      [lstoreEngine(), 1],
    ] as const) {
      for (let i = 0; i < 100; i++) db.set(`k${i}`, new Uint8Array([1]), 0);
      await db.prepareOrder();
      expect(db.orderStats.builds).toBe(builds);
      expect(db.list({ prefix: "k", limit: 2, keysOnly: true }, 0).items.map((item) => item.key)).toEqual([
        "k0",
        "k1",
      ]);
    }
  });
});
