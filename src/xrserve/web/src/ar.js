// ar.js: the AR view. Camera frames (getUserMedia) go to a `camera` session stream as JPEG;
// results come back tagged with their frame and are drawn over the video as they arrive:
// hands (with gestures), body, face, markers (docs/session-protocol.md, "camera stream").
// The HUD shows the rate results are delivered at, their latency and skipped frames.
// With a headset or phone that offers `immersive-ar`, Enter AR places the character on a
// real surface found by hit-testing.

import * as THREE from "three";
import { Character } from "./character.js";
import { xrButton } from "./xrbutton.js";

const HAND_CHAINS = [[0, 1, 2, 3, 4], [0, 5, 6, 7, 8], [5, 9, 10, 11, 12], [9, 13, 14, 15, 16],
  [13, 17, 18, 19, 20], [0, 17]];
const POSE_CHAINS = [[11, 12], [11, 13, 15], [12, 14, 16], [11, 23], [12, 24], [23, 24], [23, 25, 27], [24, 26, 28]];
const FRAME_INTERVAL_MS = 1000 / 30;
const MAX_BUFFERED_BYTES = 256 * 1024; // a slow link drops frames here rather than queueing them

export function setUp(app, $) {
  const video = $("video");
  const overlay = $("overlay");
  const stats = $("camera-stats");
  const hud = $("ar-hud");
  const button = $("camera-start");
  const grab = document.createElement("canvas");
  let stream = null;
  let camera = null;

  button.addEventListener("click", async () => {
    if (stream) return stop();
    const chosen = [...document.querySelectorAll(".camera-model:checked")].map((box) => box.value);
    const models = chosen.filter((m) => m !== "gestures");
    const gestures = chosen.includes("gestures") && models.includes("hands");
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
      await video.play();
      stream = await app.session.open(`camera-${Date.now()}`, "camera", { models, gestures });
    } catch (error) {
      stats.textContent = `camera: ${error.message}`;
      video.srcObject?.getTracks().forEach((track) => track.stop());
      return;
    }
    camera = { stream, counts: { sent: 0, answered: 0, skipped: 0, latency: 0 }, latest: {}, arrivals: [] };
    stream.on("result", (message) => {
      camera.latest[message.model] = message;
      camera.counts.answered += 1;
      camera.counts.latency = message.latency_ms;
      camera.arrivals.push(performance.now());
      draw();
    });
    stream.on("skipped", () => (camera.counts.skipped += 1));
    stream.on("error", (message) => (stats.textContent = `error: ${message.message}`));
    button.textContent = "Stop camera";
    app.camera = camera; // the browser tests read it
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
      camera.counts.sent += 1;
    }
  }

  function draw() {
    overlay.width = overlay.clientWidth;
    overlay.height = overlay.clientHeight;
    const g = overlay.getContext("2d");
    g.clearRect(0, 0, overlay.width, overlay.height);
    g.lineWidth = 3;
    g.font = "16px system-ui";
    for (const message of Object.values(camera.latest)) {
      const [w, h] = message.result.image_size || [video.videoWidth, video.videoHeight];
      const at = ([x, y]) => [(x / w) * overlay.width, (y / h) * overlay.height];
      const chains = (points, list, color) => {
        g.strokeStyle = color;
        for (const chain of list) {
          g.beginPath();
          chain.forEach((i, k) => g[k ? "lineTo" : "moveTo"](...at(points[i])));
          g.stroke();
        }
      };
      for (const hand of message.result.hands || []) {
        chains(hand.landmarks, HAND_CHAINS, hand.handedness === "Left" ? "#7bd88f" : "#8ab4f8");
        if (hand.gesture) {
          g.fillStyle = "#fff";
          g.fillText(hand.gesture, ...at(hand.landmarks[0]));
        }
      }
      for (const pose of message.result.poses || []) chains(pose.landmarks, POSE_CHAINS, "#f28b82");
      g.fillStyle = "#ffd166";
      for (const face of message.result.faces || []) {
        for (const point of face.landmarks) {
          const [x, y] = at(point);
          g.fillRect(x - 1, y - 1, 2, 2);
        }
      }
      for (const marker of message.result.markers || []) {
        chains(marker.corners, [[0, 1, 2, 3, 0]], "#c58af9");
        g.fillStyle = "#c58af9";
        g.fillText(`#${marker.id}`, ...at(marker.corners[0]));
      }
    }
    const now = performance.now();
    camera.arrivals = camera.arrivals.filter((t) => now - t < 1000);
    const found = Object.entries(camera.latest).map(([model, m]) => {
      const r = m.result;
      return `${model}: ${(r.hands || r.faces || r.poses || r.markers || []).length}`;
    });
    const { sent, answered, skipped, latency } = camera.counts;
    hud.textContent = `${camera.arrivals.length} results/s · ${latency.toFixed(1)} ms · skipped ${skipped}`;
    stats.textContent = `sent ${sent} · answered ${answered} · skipped ${skipped} · ${found.join(" · ")}`;
  }

  setUpImmersiveAR($);
}

/** Enter AR: hit-test against real surfaces; select places the character where the ring is. */
function setUpImmersiveAR($) {
  const renderer = new THREE.WebGLRenderer({ antialias: true, alpha: true });
  renderer.xr.enabled = true;
  const scene = new THREE.Scene();
  scene.add(new THREE.HemisphereLight(0xffffff, 0x444444, 2.5));
  const camera = new THREE.PerspectiveCamera(60, 1, 0.02, 50);
  const character = new Character();
  character.root.visible = false;
  scene.add(character.root);
  const reticle = new THREE.Mesh(new THREE.RingGeometry(0.1, 0.13, 32).rotateX(-Math.PI / 2),
    new THREE.MeshBasicMaterial({ color: 0x7bd88f }));
  reticle.matrixAutoUpdate = false;
  reticle.visible = false;
  scene.add(reticle);
  const controller = renderer.xr.getController(0);
  controller.addEventListener("select", () => {
    if (!reticle.visible) return;
    reticle.matrix.decompose(character.root.position, character.root.quaternion, character.root.scale);
    character.root.visible = true;
  });
  scene.add(controller);
  let hitSource = null;
  const clock = new THREE.Clock();
  xrButton($("ar-button"), $("ar-note"), renderer, "immersive-ar",
    { requiredFeatures: ["hit-test"], optionalFeatures: ["local-floor"] },
    {
      onStart: async (session) => {
        const viewer = await session.requestReferenceSpace("viewer");
        hitSource = await session.requestHitTestSource({ space: viewer });
        renderer.setAnimationLoop((time, frame) => {
          const hit = frame && hitSource && frame.getHitTestResults(hitSource)[0];
          const pose = hit?.getPose(renderer.xr.getReferenceSpace());
          reticle.visible = Boolean(pose);
          if (pose) reticle.matrix.fromArray(pose.transform.matrix);
          const viewerAt = renderer.xr.getCamera().getWorldPosition(new THREE.Vector3());
          character.update(time / 1000, clock.getDelta(), viewerAt);
          renderer.render(scene, camera);
        });
      },
      onEnd: () => {
        hitSource = null;
        renderer.setAnimationLoop(null);
      },
    });
}
