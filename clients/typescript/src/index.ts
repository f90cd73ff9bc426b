export * from "./errors.js";
export * from "./tokens.js";
export * from "./changes.js";
export * from "./tables.js";

import postgres from "postgres";

/** postgres.js options that give `int8` columns as `bigint`, as the row types say. */
export const postgresTypes = { bigint: postgres.BigInt };
