/**
 * Declares one option (a typed identity: the literal keeps its shape). Its own module, so
 * the files that declare a group of flags import nothing of schema.ts at run time.
 */
import type { OptionSpec } from "./schema.ts";

export function defineOption<const O extends OptionSpec>(option: O): O {
  return option;
}
