// xrsession.js: the browser client of the XR session protocol (docs/session-protocol.md).
// Its class is `XrServeClient`, not `XRSession`, which is WebXR's own global.
//
// One WebSocket, many streams. `XrServeClient.connect()` resolves after the server's hello;
// `session.open(name, kind, options)` resolves to a `SessionStream` once the server says
// "opened" (or rejects with the server's error message). Messages for a stream are
// delivered to its listeners by type; binary messages by channel, with the header parsed.

export const HEADER_BYTES = 16;

/** Milliseconds on the wall clock, with sub-millisecond precision: the capture timestamp. */
export function nowMs() {
  return performance.timeOrigin + performance.now();
}

export function packHeader(channel, sequence, timestampMs = nowMs(), flags = 0) {
  const view = new DataView(new ArrayBuffer(HEADER_BYTES));
  view.setUint8(0, 1);
  view.setUint8(1, flags);
  view.setUint16(2, channel, true);
  view.setUint32(4, sequence >>> 0, true);
  view.setFloat64(8, timestampMs, true);
  return view.buffer;
}

export function unpackHeader(buffer) {
  const view = new DataView(buffer);
  return {
    version: view.getUint8(0), flags: view.getUint8(1), channel: view.getUint16(2, true),
    sequence: view.getUint32(4, true), timestampMs: view.getFloat64(8, true),
  };
}

export class SessionError extends Error {
  constructor(message) {
    super(message.message);
    this.status = message.status;
    this.stream = message.stream;
    this.request = message.request;
  }
}

export class SessionStream extends EventTarget {
  constructor(session, opened) {
    super();
    this.session = session;
    this.name = opened.stream;
    this.kind = opened.kind;
    this.channel = opened.channel;
    this.opened = opened;
    this.sequence = 0;
  }

  /** A JSON message to this stream (e.g. {type: "infer", ...}). */
  send(type, fields = {}) {
    this.session.sendJSON({ ...fields, type, stream: this.name });
  }

  /** A binary message: header + payload (ArrayBuffer, TypedArray or Blob). Returns its sequence number. */
  sendBinary(payload, { sequence = ++this.sequence, timestampMs = nowMs(), flags = 0 } = {}) {
    this.session.socket.send(new Blob([packHeader(this.channel, sequence, timestampMs, flags), payload]));
    return sequence;
  }

  /** Listen to one message type of this stream; the event's `detail` is the message. */
  on(type, listener) {
    this.addEventListener(type, (event) => listener(event.detail));
    return this;
  }

  close() {
    this.session.sendJSON({ type: "close", stream: this.name });
    this.session.streams.delete(this.name);
  }
}

export class XrServeClient extends EventTarget {
  /** Connect and wait for the hello. `url` defaults to this page's server. */
  static connect({ url = null, key = null } = {}) {
    const base = url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
    const socket = new WebSocket(`${base}/v1/session${key ? `?key=${encodeURIComponent(key)}` : ""}`);
    socket.binaryType = "arraybuffer";
    return new Promise((resolve, reject) => {
      const session = new XrServeClient(socket);
      socket.addEventListener("message", function first(event) {
        const message = JSON.parse(event.data);
        socket.removeEventListener("message", first);
        if (message.type === "hello") {
          session.hello = message;
          socket.addEventListener("message", (e) => session.#receive(e));
          resolve(session);
        } else {
          reject(new SessionError(message));
        }
      });
      socket.addEventListener("error", () => reject(new Error(`cannot reach ${base}/v1/session`)));
    });
  }

  constructor(socket) {
    super();
    this.socket = socket;
    this.streams = new Map();
    this.pending = new Map(); // stream name -> {resolve, reject} while opening
    socket.addEventListener("close", (event) => this.dispatchEvent(new CustomEvent("close", { detail: event })));
  }

  sendJSON(message) {
    this.socket.send(JSON.stringify(message));
  }

  open(name, kind, options = {}) {
    return new Promise((resolve, reject) => {
      this.pending.set(name, { resolve, reject });
      this.sendJSON({ ...options, type: "open", stream: name, kind });
    });
  }

  /** Round trip and clock offset (server minus client, ms) from one ping. */
  ping() {
    return new Promise((resolve) => {
      const t = nowMs();
      const listener = (event) => {
        if (event.detail.t !== t) return;
        this.removeEventListener("pong", listener);
        const now = nowMs();
        resolve({ rttMs: now - t, offsetMs: event.detail.server_time_ms - (t + now) / 2 });
      };
      this.addEventListener("pong", listener);
      this.sendJSON({ type: "ping", t });
    });
  }

  close() {
    this.socket.close();
  }

  #receive(event) {
    if (event.data instanceof ArrayBuffer) {
      const header = unpackHeader(event.data);
      const stream = [...this.streams.values()].find((s) => s.channel === header.channel);
      const detail = { header, payload: event.data.slice(HEADER_BYTES) };
      (stream || this).dispatchEvent(new CustomEvent("binary", { detail }));
      return;
    }
    const message = JSON.parse(event.data);
    const opening = message.stream !== undefined && this.pending.get(message.stream);
    if (opening && (message.type === "opened" || message.type === "error")) {
      this.pending.delete(message.stream);
      if (message.type === "error") {
        opening.reject(new SessionError(message));
      } else {
        const stream = new SessionStream(this, message);
        this.streams.set(stream.name, stream);
        opening.resolve(stream);
      }
      return;
    }
    const stream = message.stream !== undefined ? this.streams.get(message.stream) : undefined;
    (stream || this).dispatchEvent(new CustomEvent(message.type, { detail: message }));
  }
}
