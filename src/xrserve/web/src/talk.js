// talk.js: a conversation with a character over the session's `npc` stream
// (docs/session-protocol.md, "npc stream"). Push to talk: microphone audio (16 kHz PCM16)
// goes out only while the user holds a key, a button or a controller trigger, and letting
// go sends `end_turn`, so the turn starts at once instead of after the server's silence
// timeout. The answer comes back as text deltas, an emotion, visemes and PCM16 audio,
// handed to whoever listens (the world view's character and speech bubble).

const MIC_RATE = 16000;

export const VISEME_OPENNESS = {
  sil: 0, PP: 0, FF: 0.15, TH: 0.3, DD: 0.35, kk: 0.4, CH: 0.35, SS: 0.2, nn: 0.3, RR: 0.35,
  aa: 1, E: 0.7, ih: 0.5, oh: 0.85, ou: 0.6,
};

// The microphone's samples in chunks of 1024 (64 ms at 16 kHz), posted to the page.
const CAPTURE_WORKLET = `
class Capture extends AudioWorkletProcessor {
  constructor() { super(); this.chunk = new Float32Array(1024); this.filled = 0; }
  process(inputs) {
    const samples = inputs[0][0];
    if (!samples) return true;
    for (let i = 0; i < samples.length; i++) {
      this.chunk[this.filled++] = samples[i];
      if (this.filled === this.chunk.length) {
        this.port.postMessage(this.chunk);
        this.chunk = new Float32Array(1024);
        this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("xrserve-capture", Capture);
`;

export class Talk extends EventTarget {
  /** Opens the npc stream; the microphone is asked for on the first hold, not before. */
  static async open(session, { persona, scene = "", maxTokens = 40 }) {
    // a short answer by default: it has to fit a speech bubble and be heard, not read
    // push to talk: a pause while the trigger is held is not the end of the turn, only the release is
    const stream = await session.open(`npc-${Date.now()}`, "npc", {
      persona, scene, max_tokens: maxTokens, turn_end: "client",
    });
    return new Talk(stream);
  }

  constructor(stream) {
    super();
    this.stream = stream;
    this.holding = false;
    this.turns = []; // turn_end messages, newest last (the tests read them)
    this.audioChunks = 0;
    this.answer = "";
    this.output = new AudioContext();
    this.playing = new Set();
    this.playhead = 0;
    stream.on("transcript", (m) => {
      this.answer = "";
      this.#emit("transcript", m);
    });
    stream.on("delta", (m) => {
      this.answer += m.text;
      this.#emit("answer", { text: this.answer, turn: m.turn, done: false });
    });
    stream.on("emotion", (m) => this.#emit("emotion", m));
    stream.on("visemes", (m) => this.#scheduleVisemes(m));
    stream.addEventListener("binary", ({ detail }) => this.#play(detail.payload));
    stream.on("interrupted", () => this.#stopAudio());
    stream.on("turn_end", (m) => {
      this.turns.push(m);
      if (m.answer) this.#emit("answer", { text: m.answer, turn: m.turn, done: true });
      this.#emit("turn_end", m);
    });
    stream.on("error", (m) => this.#emit("error", m));
  }

  /** Start sending the microphone (hold). */
  async hold() {
    if (this.holding) return;
    this.holding = true;
    this.#emit("holding", { holding: true });
    this.output.resume();
    // kept open after the first hold; asked again next time if the user refused
    this.microphone ||= this.#openMicrophone().catch((error) => {
      this.microphone = null;
      this.release();
      throw error;
    });
    await this.microphone;
  }

  /** Stop sending and take the turn now (release). */
  release() {
    if (!this.holding) return;
    this.holding = false;
    this.stream.send("end_turn");
    this.#emit("holding", { holding: false });
  }

  close() {
    this.stream.close();
    this.tracks?.forEach((track) => track.stop());
    this.input?.close();
    this.output.close();
  }

  async #openMicrophone() {
    const microphone = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    this.tracks = microphone.getTracks();
    // the context resamples the microphone to 16 kHz for us; the worklet runs on the audio
    // thread, so a busy page (a headset's frames) delays chunks but never drops samples
    this.input = new AudioContext({ sampleRate: MIC_RATE });
    const module = URL.createObjectURL(new Blob([CAPTURE_WORKLET], { type: "text/javascript" }));
    await this.input.audioWorklet.addModule(module);
    URL.revokeObjectURL(module);
    const capture = new AudioWorkletNode(this.input, "xrserve-capture");
    capture.port.onmessage = ({ data: samples }) => {
      if (!this.holding) return;
      const pcm = new Int16Array(samples.length);
      for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-1, Math.min(1, samples[i])) * 0x7fff;
      this.stream.sendBinary(pcm.buffer);
    };
    this.input.createMediaStreamSource(microphone).connect(capture);
    capture.connect(this.input.destination); // silent: it writes no output
  }

  #play(payload) {
    // PCM16 mono at the voice's rate, played back to back
    const pcm = new Int16Array(payload);
    if (!pcm.length) return;
    const rate = this.stream.opened.audio_out?.sample_rate || 22050;
    const buffer = this.output.createBuffer(1, pcm.length, rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 0x8000;
    const node = this.output.createBufferSource();
    node.buffer = buffer;
    node.connect(this.output.destination);
    this.playhead = Math.max(this.playhead, this.output.currentTime);
    node.start(this.playhead);
    this.playhead += buffer.duration;
    this.playing.add(node);
    node.onended = () => this.playing.delete(node);
    this.audioChunks += 1;
  }

  #stopAudio() {
    for (const node of this.playing) node.stop();
    this.playing.clear();
    this.playhead = 0;
    this.#emit("viseme", { viseme: "sil", openness: 0 });
  }

  #scheduleVisemes(message) {
    // the mouth moves against the audio clock: this piece starts where the queued audio ends
    const start = Math.max(this.playhead, this.output.currentTime);
    for (const v of message.visemes) {
      const delay = (start - this.output.currentTime) * 1000 + (v.start_ms - message.offset_ms);
      setTimeout(() => this.#emit("viseme", { viseme: v.viseme, openness: VISEME_OPENNESS[v.viseme] ?? 0.3 }),
        Math.max(0, delay));
    }
    const end = (start - this.output.currentTime) * 1000 + message.duration_ms;
    setTimeout(() => this.#emit("viseme", { viseme: "sil", openness: 0 }), Math.max(0, end));
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
