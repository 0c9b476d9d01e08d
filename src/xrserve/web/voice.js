// voice.js: talk to a character. Microphone audio goes to an `npc` session stream as 16 kHz
// PCM16; the answer comes back as text deltas, PCM16 audio pieces with visemes, and an
// emotion (docs/session-protocol.md, "npc stream").

import { line } from "./chat.js";

const MIC_RATE = 16000;

export function setUp(app, $) {
  const button = $("talk-start");
  const log = $("npc-log");
  const emotion = $("npc-emotion");
  const stats = $("npc-stats");
  let talk = null;

  button.addEventListener("click", async () => {
    if (talk) return stop();
    try {
      talk = await start();
      button.textContent = "Stop talking";
    } catch (error) {
      line(log, "error", `voice: ${error.message}`);
      talk = null;
    }
  });

  async function start() {
    const stream = await app.session.open(`npc-${Date.now()}`, "npc", {
      persona: { name: "Ada", description: "a friendly guide in a virtual museum", style: "warm and brief" },
    });
    const microphone = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    // the context resamples the microphone to 16 kHz for us
    const input = new AudioContext({ sampleRate: MIC_RATE });
    const source = input.createMediaStreamSource(microphone);
    const tap = input.createScriptProcessor(1024, 1, 1); // 64 ms chunks
    tap.onaudioprocess = (event) => {
      const samples = event.inputBuffer.getChannelData(0);
      const pcm = new Int16Array(samples.length);
      for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-1, Math.min(1, samples[i])) * 0x7fff;
      stream.sendBinary(pcm.buffer);
    };
    source.connect(tap);
    tap.connect(input.destination);

    const output = new AudioContext();
    const playing = new Set();
    let playhead = 0;
    let answer = null;
    const state = { stream, microphone, input, output, audioChunks: 0, turns: [] };

    stream.on("transcript", (m) => {
      line(log, "user", m.text || "(nothing heard)");
      answer = line(log, "assistant", "");
    });
    stream.on("delta", (m) => answer && (answer.textContent += m.text));
    stream.on("emotion", (m) => (emotion.textContent = m.emotion));
    stream.on("visemes", (m) => scheduleVisemes(m));
    stream.addEventListener("binary", ({ detail }) => {
      // PCM16 mono at the voice's rate, played back to back
      const pcm = new Int16Array(detail.payload);
      if (!pcm.length) return;
      const rate = stream.opened.audio_out?.sample_rate || 22050;
      const buffer = output.createBuffer(1, pcm.length, rate);
      const channel = buffer.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 0x8000;
      const node = output.createBufferSource();
      node.buffer = buffer;
      node.connect(output.destination);
      playhead = Math.max(playhead, output.currentTime);
      node.start(playhead);
      playhead += buffer.duration;
      playing.add(node);
      node.onended = () => playing.delete(node);
      state.audioChunks += 1;
    });
    stream.on("interrupted", () => {
      for (const node of playing) node.stop();
      playing.clear();
      playhead = 0;
      if (answer) answer.textContent += " …";
    });
    stream.on("turn_end", (m) => {
      state.turns.push(m);
      if (answer) answer.dataset.done = "true";
      const t = m.timings || {};
      stats.textContent = `end of speech → first audio ${t.first_audio_ms ?? "–"} ms · ASR ${t.asr_ms ?? "–"} ms · ` +
        `first sentence ${t.llm_first_sentence_ms ?? "–"} ms · TTS ${t.tts_first_ms ?? "–"} ms`;
    });
    stream.on("error", (m) => line(log, "error", m.message));

    function scheduleVisemes(message) {
      // show the mouth shape in time with the audio clock
      const start = Math.max(playhead, output.currentTime);
      for (const v of message.visemes) {
        const delay = (start - output.currentTime) * 1000 + (v.start_ms - message.offset_ms);
        setTimeout(() => (emotion.dataset.viseme = v.viseme), Math.max(0, delay));
      }
    }

    app.voice = state;
    return state;
  }

  function stop() {
    talk.stream.close();
    talk.microphone.getTracks().forEach((track) => track.stop());
    talk.input.close();
    talk.output.close();
    talk = null;
    button.textContent = "Start talking";
  }
}
