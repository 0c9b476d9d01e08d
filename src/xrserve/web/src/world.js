// world.js: the world view. A prompt becomes a scene job on the server (POST /v1/scenes),
// followed over the session's `jobs` stream; its GLB is loaded into a three.js scene with a
// character who talks (talk.js) and whose answer floats above its head (bubble.js).
// Desktop: orbit with the mouse, walk with W A S D. Headset: Enter VR (WebXR through three's
// WebXRManager), controllers or hands, trigger held to talk, grip to teleport onto the
// walkable mesh the scene carries.

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { XRHandModelFactory } from "three/addons/webxr/XRHandModelFactory.js";
import { SpeechBubble } from "./bubble.js";
import { Character } from "./character.js";
import { line } from "./chat.js";
import { Talk } from "./talk.js";
import { xrButton } from "./xrbutton.js";

// A headset's GPU (or a test's software renderer) may want fewer pixels: ?xr_scale=0.5
const XR_SCALE = Number(new URLSearchParams(location.search).get("xr_scale")) || 1;
const WALK_M_PER_S = 4;
const UP = new THREE.Vector3(0, 1, 0);
const PERSONA = { name: "Ada", description: "a guide who lives in this generated world", style: "warm and brief" };

export class WorldView {
  constructor(app, $) {
    this.app = app;
    this.$ = $;
    this.state = { frames: 0, xrFrames: 0, presenting: false, sceneId: null, jobId: null, prompt: null, nodes: [],
      teleports: 0, talking: false, error: null };
    this.keys = new Set();
    this.clock = new THREE.Clock();
    this.raycaster = new THREE.Raycaster();
    this.#setUpRenderer($("world-stage"));
    this.character = new Character({ name: PERSONA.name });
    this.bubble = new SpeechBubble();
    this.scene.add(this.character.root, this.bubble.sprite);
    this.#setUpXR();
    this.#setUpInput();
    $("scene-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.generate($("scene-prompt").value.trim());
    });
    app.world = this; // the browser tests read `state` and `snapshot()`
  }

  /** Prompt → job → GLB in the scene. Resolves when the scene is shown. */
  async generate(prompt) {
    const status = this.$("scene-status");
    const progress = this.$("scene-progress");
    if (!prompt) return;
    try {
      status.textContent = "asking for a world…";
      progress.value = 0;
      const job = await this.app.request("/v1/scenes", { method: "POST", body: { prompt } });
      this.state.jobId = job.id;
      const done = await this.#follow(job, (p) => {
        progress.value = p.progress;
        status.textContent = `${p.stage || p.status} ${(100 * p.progress).toFixed(0)}%`;
      });
      const glb = await this.app.request(done.result_url, { raw: true });
      const gltf = await new GLTFLoader().parseAsync(await glb.arrayBuffer(), "");
      this.#show(gltf.scene, done.scene_id, prompt);
      progress.value = 1;
      const objects = gltf.scene.children.filter((n) => n.userData.category).length;
      status.textContent = `${objects} objects · scene ${done.scene_id}`;
      await this.#talkAbout(prompt);
    } catch (error) {
      this.state.error = error.message;
      status.textContent = `world: ${error.message}`;
    }
  }

  /** The character's head and the bubble, in world coordinates (for tests and tools). */
  snapshot() {
    const head = this.character.headPosition();
    const bubble = this.bubble.sprite.getWorldPosition(new THREE.Vector3());
    return {
      head: head.toArray(),
      bubble: { text: this.bubble.text, visible: this.bubble.sprite.visible, position: bubble.toArray() },
      character: this.character.root.position.toArray(),
      emotion: this.character.emotion,
      inScene: this.bubble.sprite.parent === this.scene,
    };
  }

  #setUpRenderer(stage) {
    const renderer = new THREE.WebGLRenderer({ antialias: true });
    renderer.setPixelRatio(Math.min(devicePixelRatio, 2));
    renderer.xr.enabled = true;
    renderer.xr.setReferenceSpaceType("local-floor");
    renderer.xr.setFramebufferScaleFactor(XR_SCALE);
    stage.prepend(renderer.domElement);
    const scene = new THREE.Scene();
    scene.background = new THREE.Color(0xa9cbe8);
    scene.fog = new THREE.Fog(0xa9cbe8, 70, 180);
    scene.add(new THREE.HemisphereLight(0xe8f2ff, 0x6b5b45, 1.8));
    const sun = new THREE.DirectionalLight(0xfff4e0, 2.4);
    sun.position.set(30, 60, 25);
    scene.add(sun);
    const camera = new THREE.PerspectiveCamera(60, 1, 0.05, 400);
    camera.position.set(0, 20, 40);
    // the rig carries the viewer in VR: teleporting moves it, the headset moves inside it
    this.rig = new THREE.Group();
    this.rig.add(camera);
    scene.add(this.rig);
    this.orbit = new OrbitControls(camera, renderer.domElement);
    this.orbit.maxPolarAngle = Math.PI * 0.49;
    this.orbit.enableDamping = true;
    const fit = () => {
      const { clientWidth: w, clientHeight: h } = stage;
      renderer.setSize(w, h);
      camera.aspect = w / Math.max(1, h);
      camera.updateProjectionMatrix();
    };
    new ResizeObserver(fit).observe(stage);
    fit();
    Object.assign(this, { renderer, scene, camera });
    renderer.setAnimationLoop((time, frame) => this.#frame(time, frame));
  }

  #frame(time, xrFrame) {
    const dt = Math.min(this.clock.getDelta(), 0.1);
    this.state.frames += 1;
    if (xrFrame) this.state.xrFrames += 1;
    const presenting = this.renderer.xr.isPresenting;
    if (!presenting) {
      this.#walk(dt);
      this.orbit.update();
    } else {
      this.#aimControllers();
    }
    const viewer = (presenting ? this.renderer.xr.getCamera() : this.camera).getWorldPosition(new THREE.Vector3());
    this.character.update(time / 1000, dt, viewer);
    this.bubble.follow(this.character.headPosition());
    this.renderer.render(this.scene, this.camera);
    if (this.state.frames % 30 === 0) this.#hud();
  }

  #hud() {
    const now = performance.now();
    const fps = this.lastHud ? (30 * 1000) / (now - this.lastHud) : 0;
    this.lastHud = now;
    const mode = this.state.presenting ? `VR · ${this.state.xrFrames} XR frames` : "desktop";
    this.$("world-hud").textContent = `${fps.toFixed(0)} fps · ${mode}${this.state.talking ? " · listening…" : ""}`;
  }

  // ---- the scene -------------------------------------------------------------------

  #follow(job, onProgress) {
    // over the session when there is one (no polling), else GET /v1/jobs/{id} every 250 ms
    if (!this.app.session) return this.#poll(job, onProgress);
    return new Promise((resolve, reject) => {
      this.app.session.open(`job-${job.id}`, "jobs", { job: job.id }).then((stream) => {
        stream.on("progress", onProgress);
        stream.on("done", (m) => {
          stream.close();
          resolve(m);
        });
        stream.on("failed", (m) => {
          stream.close();
          reject(new Error(m.error || "the scene job failed"));
        });
      }, reject);
    });
  }

  async #poll(job, onProgress) {
    for (;;) {
      const state = await this.app.request(`/v1/jobs/${job.id}`);
      if (state.status === "succeeded") return state;
      if (state.status === "failed" || state.status === "cancelled") throw new Error(state.error || state.status);
      onProgress(state);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  #show(root, sceneId, prompt) {
    if (this.world) this.scene.remove(this.world);
    this.world = root;
    this.scene.add(root);
    this.terrain = root.getObjectByName("terrain");
    this.navmesh = root.getObjectByName("navmesh");
    if (this.navmesh) this.navmesh.visible = false; // only for teleport and ground tests
    this.spawn = root.getObjectByName("spawn");
    const names = [];
    root.traverse((node) => node.name && names.push(node.name));
    Object.assign(this.state, { sceneId, prompt, nodes: names });
    this.#placeCharacter();
    this.#placeDesktopCamera();
    this.bubble.setText("");
  }

  /** The spawn point and the way to face from it: towards the scene's objects (their mean
   * position), else where the spawn node's +Z points (the terrain's centre). */
  #spawnPose() {
    const position = this.spawn ? this.spawn.getWorldPosition(new THREE.Vector3()) : new THREE.Vector3();
    const forward = new THREE.Vector3(0, 0, 1);
    if (this.spawn) forward.applyQuaternion(this.spawn.getWorldQuaternion(new THREE.Quaternion()));
    const objects = this.world.children.filter((node) => node.userData.category && node.userData.category !== "water");
    if (objects.length) {
      const mean = new THREE.Vector3();
      for (const node of objects) mean.add(node.getWorldPosition(new THREE.Vector3()));
      mean.divideScalar(objects.length).sub(position);
      if (mean.setY(0).length() > 3) forward.copy(mean);
    }
    return { position, forward: forward.setY(0).normalize() };
  }

  #placeCharacter() {
    // a couple of metres in front of the spawn, on walkable ground, facing the viewer
    const { position, forward } = this.#spawnPose();
    let spot = null;
    for (const distance of [2.4, 2, 1.6, 3, 1.2]) {
      for (const turn of [0, 0.4, -0.4, 0.8, -0.8]) {
        const candidate = position.clone().add(forward.clone().applyAxisAngle(UP, turn).multiplyScalar(distance));
        const y = this.#heightAt(candidate, this.navmesh);
        if (y !== null) {
          spot = candidate.setY(y);
          break;
        }
      }
      if (spot) break;
    }
    spot ||= position.clone().add(forward.clone().multiplyScalar(2)).setY(this.#heightAt(position) ?? position.y);
    this.character.root.position.copy(spot);
    this.character.root.lookAt(position.x, spot.y, position.z);
    this.character.root.updateMatrixWorld(true);
  }

  #placeDesktopCamera() {
    // a little behind and above the spawn, looking past the character at the world beyond it
    const { position, forward } = this.#spawnPose();
    this.camera.position.copy(position).addScaledVector(forward, -2.5).add(new THREE.Vector3(0, 2.6, 0));
    this.orbit.target.copy(this.character.headPosition()).addScaledVector(forward, 4).addScaledVector(UP, -0.8);
    this.orbit.update();
  }

  /** The height of `mesh` (the terrain by default) straight under `point`, or null off it. */
  #heightAt(point, mesh = this.terrain) {
    if (!mesh) return null;
    this.raycaster.set(new THREE.Vector3(point.x, 1000, point.z), new THREE.Vector3(0, -1, 0));
    const hit = this.raycaster.intersectObject(mesh, true)[0];
    return hit ? hit.point.y : null;
  }

  #walk(dt) {
    const ahead = (this.keys.has("w") ? 1 : 0) - (this.keys.has("s") ? 1 : 0);
    const side = (this.keys.has("d") ? 1 : 0) - (this.keys.has("a") ? 1 : 0);
    if (!ahead && !side) return;
    const forward = this.orbit.target.clone().sub(this.camera.position).setY(0).normalize();
    const right = new THREE.Vector3().crossVectors(forward, UP);
    const step = forward.multiplyScalar(ahead).add(right.multiplyScalar(side)).normalize();
    step.multiplyScalar(WALK_M_PER_S * dt);
    this.camera.position.add(step);
    this.orbit.target.add(step);
    const ground = this.#heightAt(this.orbit.target);
    if (ground !== null) {
      // walk over the land: the point looked at stays a standing person's chest height above it
      const dy = ground + 1.2 - this.orbit.target.y;
      this.orbit.target.y += dy;
      this.camera.position.y += dy;
    }
  }

  // ---- talking ---------------------------------------------------------------------

  async #talkAbout(prompt) {
    if (!this.app.session) return;
    const scene = `You stand in a world made from these words: ${prompt}.`;
    if (this.talk) return this.talk.stream.send("context", { scene });
    this.talk = await Talk.open(this.app.session, { persona: PERSONA, scene });
    const log = this.$("npc-log");
    let answer = null;
    this.talk.addEventListener("transcript", ({ detail }) => {
      line(log, "user", detail.text || "(nothing heard)");
      answer = line(log, "assistant", "");
      this.bubble.setText("…");
    });
    this.talk.addEventListener("answer", ({ detail }) => {
      this.bubble.setText(detail.text);
      if (answer) {
        answer.textContent = detail.text;
        if (detail.done) answer.dataset.done = "true";
      }
    });
    this.talk.addEventListener("emotion", ({ detail }) => {
      this.character.setEmotion(detail.emotion);
      this.$("npc-emotion").textContent = detail.emotion;
    });
    this.talk.addEventListener("viseme", ({ detail }) => this.character.setViseme(detail.viseme, detail.openness));
    this.talk.addEventListener("holding", ({ detail }) => {
      this.state.talking = detail.holding;
      this.$("talk").classList.toggle("active", detail.holding);
    });
    this.talk.addEventListener("turn_end", ({ detail }) => {
      if (detail.emotion) {
        this.character.setEmotion(detail.emotion); // the whole answer's, after the first piece's
        this.$("npc-emotion").textContent = detail.emotion;
      }
      const t = detail.timings || {};
      this.$("npc-stats").textContent = `end of speech → first audio ${t.first_audio_ms ?? "–"} ms · ` +
        `ASR ${t.asr_ms ?? "–"} ms · first sentence ${t.llm_first_sentence_ms ?? "–"} ms`;
    });
    this.talk.addEventListener("error", ({ detail }) => line(log, "error", detail.message));
  }

  #hold() {
    this.talk?.hold().catch((error) => line(this.$("npc-log"), "error", `microphone: ${error.message}`));
  }

  #release() {
    this.talk?.release();
  }

  #setUpInput() {
    const talk = this.$("talk");
    talk.addEventListener("pointerdown", () => this.#hold());
    for (const type of ["pointerup", "pointerleave"]) talk.addEventListener(type, () => this.#release());
    const typing = (event) => event.target instanceof HTMLInputElement;
    addEventListener("keydown", (event) => {
      if (typing(event) || this.$("view-world").hidden) return;
      const key = event.key.toLowerCase();
      if (key === "t" && !event.repeat) this.#hold();
      this.keys.add(key);
    });
    addEventListener("keyup", (event) => {
      const key = event.key.toLowerCase();
      if (key === "t") this.#release();
      this.keys.delete(key);
    });
    addEventListener("blur", () => this.keys.clear());
  }

  // ---- WebXR -------------------------------------------------------------------------

  #setUpXR() {
    const xr = this.renderer.xr;
    const handModels = new XRHandModelFactory();
    this.controllers = [0, 1].map((index) => {
      const controller = xr.getController(index);
      const ray = new THREE.Line(
        new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(), new THREE.Vector3(0, 0, -1)]),
        new THREE.LineBasicMaterial({ color: 0xffffff }),
      );
      ray.scale.z = 5;
      controller.add(ray);
      controller.userData.ray = ray;
      controller.addEventListener("selectstart", () => this.#hold());
      controller.addEventListener("selectend", () => this.#release());
      controller.addEventListener("squeezestart", () => this.#teleport(controller));
      const hand = xr.getHand(index);
      hand.add(handModels.createHandModel(hand, "spheres"));
      this.rig.add(controller, hand);
      return controller;
    });
    this.marker = new THREE.Mesh(
      new THREE.RingGeometry(0.25, 0.32, 32).rotateX(-Math.PI / 2),
      new THREE.MeshBasicMaterial({ color: 0x7bd88f }),
    );
    this.marker.visible = false;
    this.scene.add(this.marker);
    xrButton(this.$("vr-button"), this.$("vr-note"), this.renderer, "immersive-vr",
      { optionalFeatures: ["local-floor", "hand-tracking"] },
      { onStart: () => this.#enterVR(), onEnd: () => this.#leaveVR() });
  }

  #enterVR() {
    // stand at the spawn, facing the way it faces (the viewer looks down -Z in the rig)
    const { position, forward } = this.#spawnPose();
    this.desktop = { camera: this.camera.position.clone(), target: this.orbit.target.clone() };
    this.rig.position.copy(position);
    this.rig.rotation.y = Math.atan2(forward.x, forward.z) + Math.PI;
    this.orbit.enabled = false;
    this.state.presenting = true;
  }

  #leaveVR() {
    this.rig.position.set(0, 0, 0);
    this.rig.rotation.set(0, 0, 0);
    this.camera.position.copy(this.desktop.camera);
    this.camera.quaternion.identity();
    this.orbit.target.copy(this.desktop.target);
    this.orbit.enabled = true;
    this.marker.visible = false;
    this.state.presenting = false;
  }

  /** Where the controller's ray meets the walkable mesh, or null. */
  #aim(controller) {
    if (!this.navmesh) return null;
    const origin = controller.getWorldPosition(new THREE.Vector3());
    const direction = new THREE.Vector3(0, 0, -1).applyQuaternion(controller.getWorldQuaternion(new THREE.Quaternion()));
    this.raycaster.set(origin, direction);
    return this.raycaster.intersectObject(this.navmesh, true)[0] || null;
  }

  #aimControllers() {
    let shown = false;
    for (const controller of this.controllers) {
      const hit = this.#aim(controller);
      controller.userData.ray.scale.z = hit ? hit.distance : 5;
      if (hit && !shown) {
        this.marker.position.copy(hit.point).addScaledVector(UP, 0.02);
        shown = true;
      }
    }
    this.marker.visible = shown;
  }

  #teleport(controller) {
    const hit = this.#aim(controller);
    if (!hit) return;
    // move the rig so the headset (not the rig's origin) lands on the point
    const head = this.renderer.xr.getCamera().getWorldPosition(new THREE.Vector3());
    this.rig.position.x += hit.point.x - head.x;
    this.rig.position.z += hit.point.z - head.z;
    this.rig.position.y = hit.point.y;
    this.state.teleports += 1;
  }
}
