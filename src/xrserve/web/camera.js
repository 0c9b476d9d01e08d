// camera.js: the camera panel. Frames go to a `camera` session stream as JPEG; results come
// back tagged with their frame and are drawn over the video (docs/session-protocol.md).

const HAND_CHAINS = [[0, 1, 2, 3, 4], [0, 5, 6, 7, 8], [5, 9, 10, 11, 12], [9, 13, 14, 15, 16],
  [13, 17, 18, 19, 20], [0, 17]];
const FRAME_INTERVAL_MS = 1000 / 30;
const MAX_BUFFERED_BYTES = 256 * 1024; // a slow link drops frames here rather than queueing them

export function setUp(app, $) {
  const video = $("video");
  const overlay = $("overlay");
  const stats = $("camera-stats");
  const button = $("camera-start");
  const grab = document.createElement("canvas");
  const latest = {}; // model -> newest result message
  let stream = null;
  let counts = { sent: 0, answered: 0, skipped: 0, latency: 0 };

  button.addEventListener("click", async () => {
    if (stream) return stop();
    const models = [...document.querySelectorAll(".camera-model:checked")].map((box) => box.value);
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
      await video.play();
      stream = await app.session.open(`camera-${Date.now()}`, "camera", { models });
    } catch (error) {
      stats.textContent = `camera: ${error.message}`;
      return;
    }
    counts = { sent: 0, answered: 0, skipped: 0, latency: 0 };
    stream.on("result", (message) => {
      latest[message.model] = message;
      counts.answered += 1;
      counts.latency = message.latency_ms;
      draw();
    });
    stream.on("skipped", () => (counts.skipped += 1));
    stream.on("error", (message) => (stats.textContent = `error: ${message.message}`));
    button.textContent = "Stop camera";
    app.camera = { stream, counts, latest };
    sendFrames();
  });

  function stop() {
    stream.close();
    stream = null;
    video.srcObject?.getTracks().forEach((track) => track.stop());
    button.textContent = "Start camera";
  }

  async function sendFrames() {
    let last = 0;
    while (stream) {
      await new Promise((resolve) => requestAnimationFrame(resolve));
      const now = performance.now();
      if (now - last < FRAME_INTERVAL_MS || !video.videoWidth) continue;
      if (app.session.socket.bufferedAmount > MAX_BUFFERED_BYTES) continue;
      last = now;
      const captured = performance.timeOrigin + now;
      grab.width = video.videoWidth;
      grab.height = video.videoHeight;
      grab.getContext("2d").drawImage(video, 0, 0);
      const jpeg = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.7));
      if (!stream || !jpeg) continue;
      stream.sendBinary(jpeg, { timestampMs: captured });
      counts.sent += 1;
    }
  }

  function draw() {
    overlay.width = overlay.clientWidth;
    overlay.height = overlay.clientHeight;
    const g = overlay.getContext("2d");
    g.clearRect(0, 0, overlay.width, overlay.height);
    for (const message of Object.values(latest)) {
      const [w, h] = message.result.image_size || [video.videoWidth, video.videoHeight];
      const at = ([x, y]) => [(x / w) * overlay.width, (y / h) * overlay.height];
      for (const hand of message.result.hands || []) {
        g.strokeStyle = hand.handedness === "Left" ? "#7bd88f" : "#8ab4f8";
        g.lineWidth = 3;
        for (const chain of HAND_CHAINS) {
          g.beginPath();
          chain.forEach((i, k) => g[k ? "lineTo" : "moveTo"](...at(hand.landmarks[i])));
          g.stroke();
        }
        if (hand.gesture) {
          g.fillStyle = "#fff";
          g.font = "16px system-ui";
          g.fillText(hand.gesture, ...at(hand.landmarks[0]));
        }
      }
      for (const person of [...(message.result.faces || []), ...(message.result.poses || [])]) {
        g.fillStyle = "#ffd166";
        for (const point of person.landmarks) {
          const [x, y] = at(point);
          g.fillRect(x - 1, y - 1, 2, 2);
        }
      }
    }
    const found = Object.entries(latest).map(([model, m]) => {
      const r = m.result;
      return `${model}: ${(r.hands || r.faces || r.poses || []).length}`;
    });
    stats.textContent = `sent ${counts.sent} · answered ${counts.answered} · skipped ${counts.skipped} · ` +
      `latency ${counts.latency.toFixed(1)} ms · ${found.join(" · ")}`;
  }
}
