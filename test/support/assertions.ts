import { expect } from "bun:test";
import { DkvError, type DkvErrorCode } from "../../src/errors.ts";

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

export function bytes(text: string): Uint8Array {
  return utf8.encode(text);
}

export function text(value: Uint8Array | undefined): string | undefined {
  return value === undefined ? undefined : utf8Decoder.decode(value);
}

/** Asserts `action` fails with a DkvError of `code` (sync throws and rejections alike) and returns it. */
export async function expectDkvError(action: () => unknown, code: DkvErrorCode): Promise<DkvError> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DkvError);
  const error = caught as DkvError;
  expect(error.code).toBe(code);
  expect(error.message.length).toBeGreaterThan(0);
  return error;
}

/** The DkvError `work` rejects with (any code); anything else, or success, fails the test. */
export async function failureOf(work: Promise<unknown>): Promise<DkvError> {
  try {
    await work;
  } catch (error) {
    if (error instanceof DkvError) return error;
    throw error;
  }
  throw new Error("expected the request to fail");
}
