/**
 * The Prisma fragment (prisma/keycloak-sync.prisma): Prisma's own CLI accepts it in a
 * multi-schema datasource, and each model reads what `keycloak-sync migrate` created —
 * every mapped column exists with the Prisma type and optionality its Postgres type and
 * nullability stand for, and each model's id is the table's primary key.
 *
 * `prisma validate` runs on Prisma's bundled WebAssembly schema parser; the CLI still looks
 * for its native schema engine first, which it would download from binaries.prisma.sh —
 * unreachable from these machines — so a stand-in path is named for it (never run).
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { liveSchema, repo } from "./support.js";

const here = join(repo, "clients/typescript");
const fragment = readFileSync(join(here, "prisma/keycloak-sync.prisma"), "utf8");

interface Field {
  name: string;
  type: string;
  optional: boolean;
  column: string;
  id: boolean;
}

interface Model {
  name: string;
  table: string;
  schema: string;
  fields: Field[];
  ids: string[];
}

/** The models of a Prisma schema: enough of the grammar for this fragment. */
function parseModels(text: string): Model[] {
  const models: Model[] = [];
  for (const match of text.matchAll(/^model (\w+) \{\n([\s\S]*?)^\}/gm)) {
    const model: Model = { name: match[1]!, table: match[1]!, schema: "public", fields: [], ids: [] };
    for (const raw of match[2]!.split("\n")) {
      const line = raw.trim();
      if (line === "" || line.startsWith("//")) continue;
      const block = /^@@(\w+)\((.*)\)$/.exec(line);
      if (block) {
        const [, attribute, args] = block;
        if (attribute === "map") model.table = JSON.parse(args!) as string;
        else if (attribute === "schema") model.schema = JSON.parse(args!) as string;
        else if (attribute === "id") model.ids = args!.replace(/[[\]\s]/g, "").split(",");
        continue;
      }
      const field = /^(\w+)\s+(\w+)(\?)?\s*(.*)$/.exec(line);
      assert.ok(field, `model ${model.name}: cannot read "${line}"`);
      const [, name, type, optional, attributes] = field;
      const mapped = /@map\("([^"]+)"\)/.exec(attributes!);
      model.fields.push({
        name: name!,
        type: type!,
        optional: optional === "?",
        column: mapped ? mapped[1]! : name!,
        id: /(^|\s)@id(\s|$)/.test(attributes!),
      });
    }
    const single = model.fields.filter((f) => f.id).map((f) => f.name);
    if (single.length > 0) model.ids = single;
    models.push(model);
  }
  return models;
}

const PRISMA_TYPE: Record<string, string> = {
  text: "String",
  boolean: "Boolean",
  bigint: "BigInt",
  "timestamp with time zone": "DateTime",
  jsonb: "Json",
};

test("Prisma's CLI accepts the fragment in a multi-schema datasource", () => {
  const dir = mkdtempSync(join(tmpdir(), "kcs-prisma-"));
  const schema = join(dir, "schema.prisma");
  writeFileSync(
    schema,
    `datasource db {\n  provider = "postgresql"\n  schemas  = ["public", "keycloak_sync"]\n}\n\n` +
      `generator client {\n  provider = "prisma-client"\n  output   = "./generated"\n}\n\n${fragment}`,
  );
  const stub = join(dir, "no-schema-engine");
  writeFileSync(stub, "#!/bin/sh\nexit 1\n", { mode: 0o755 });
  const result = spawnSync(join(here, "node_modules/.bin/prisma"), ["validate", "--schema", schema], {
    cwd: dir,
    env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: stub, PRISMA_HIDE_UPDATE_MESSAGE: "1", CHECKPOINT_DISABLE: "1" },
    encoding: "utf8",
  });
  assert.equal(result.status, 0, `prisma validate: ${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout + result.stderr, /is valid/);
});

test("every model reads the live schema: columns, types, optionality, primary keys", async () => {
  const models = parseModels(fragment);
  assert.equal(models.length, 9, models.map((m) => m.name).join(", "));
  const { columns, primaryKeys } = await liveSchema();
  const problems: string[] = [];
  for (const model of models) {
    assert.equal(model.schema, "keycloak_sync", model.name);
    const live = columns.filter((c) => c.table_name === model.table);
    if (live.length === 0) {
      problems.push(`${model.name}: no table ${model.table}`);
      continue;
    }
    for (const field of model.fields) {
      const found = live.find((c) => c.column_name === field.column);
      if (!found) {
        problems.push(`${model.name}.${field.name}: no column ${model.table}.${field.column}`);
        continue;
      }
      const expected = PRISMA_TYPE[found.data_type] ?? found.data_type;
      if (field.type !== expected) problems.push(`${model.name}.${field.name}: ${field.type}, the column is ${found.data_type}`);
      if (field.optional !== (found.is_nullable === "YES")) {
        problems.push(`${model.name}.${field.name}: ${field.optional ? "optional" : "required"}, the column is ${found.is_nullable === "YES" ? "nullable" : "not null"}`);
      }
    }
    const key = primaryKeys.get(model.table) ?? [];
    const idColumns = model.ids.map((name) => model.fields.find((f) => f.name === name)?.column);
    if (JSON.stringify(idColumns) !== JSON.stringify(key)) {
      problems.push(`${model.name}: id (${idColumns.join(", ")}), primary key (${key.join(", ")})`);
    }
  }
  assert.deepEqual(problems, []);
});
