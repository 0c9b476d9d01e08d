// character.js: the character who stands in the world and talks. Built from three.js
// primitives, so it needs no model file: a body, a head that turns to the viewer, a mouth
// that opens with the visemes and brows and an icon that show the emotion. It idles
// (breathing, a slight sway) so it reads as alive in a headset.

import * as THREE from "three";

export const HEIGHT_M = 1.7;
const HEAD_Y = 1.52;
const EMOTIONS = {
  // brow tilt (radians, inner end up is positive), mouth curve, the badge's colour
  neutral: { brow: 0, smile: 0, color: "" },
  happy: { brow: 0.1, smile: 1, color: "#f2b84b" },
  sad: { brow: 0.35, smile: -1, color: "#5b8def" },
  angry: { brow: -0.4, smile: -0.5, color: "#e5534b" },
  surprised: { brow: 0.2, smile: 0, color: "#b37feb" },
  afraid: { brow: 0.45, smile: -0.6, color: "#6cc4a1" },
};

function material(color) {
  return new THREE.MeshStandardMaterial({ color, roughness: 0.8 });
}

export class Character {
  constructor({ name = "Ada", coat = 0x3f6fb5, skin = 0xe0b08c } = {}) {
    this.name = name;
    this.emotion = "neutral";
    this.viseme = "sil";
    this.mouthOpen = 0; // smoothed towards the target openness
    this.targetOpen = 0;
    this.root = new THREE.Group();
    this.root.name = "character";

    const body = new THREE.Mesh(new THREE.CapsuleGeometry(0.2, 1.0, 6, 16), material(coat));
    body.position.y = 0.7; // feet on the ground, shoulders under the head
    this.body = body;
    this.torso = new THREE.Group(); // sways; the head rides on it
    this.torso.add(body);
    this.root.add(this.torso);

    this.head = new THREE.Group();
    this.head.position.y = HEAD_Y;
    this.head.name = "character-head";
    this.torso.add(this.head);
    const skull = new THREE.Mesh(new THREE.SphereGeometry(0.15, 24, 16), material(skin));
    skull.scale.set(1, 1.12, 1);
    this.head.add(skull);
    const hair = new THREE.Mesh(new THREE.SphereGeometry(0.155, 24, 12, 0, Math.PI * 2, 0, Math.PI / 2.2),
      material(0x3b2a20));
    hair.position.y = 0.02;
    hair.rotation.x = -0.25;
    this.head.add(hair);
    const dark = material(0x1a1a1a);
    for (const side of [-1, 1]) {
      const eye = new THREE.Mesh(new THREE.SphereGeometry(0.018, 12, 8), dark);
      eye.position.set(0.05 * side, 0.03, 0.135);
      this.head.add(eye);
      const brow = new THREE.Mesh(new THREE.BoxGeometry(0.05, 0.008, 0.01), dark);
      brow.position.set(0.05 * side, 0.075, 0.14);
      brow.userData.side = side;
      this.head.add(brow);
      (this.brows ||= []).push(brow);
    }
    this.mouth = new THREE.Mesh(new THREE.SphereGeometry(0.035, 16, 8), material(0x5a1f1f));
    this.mouth.position.set(0, -0.06, 0.128);
    this.mouth.scale.set(1.2, 0.15, 0.4);
    this.head.add(this.mouth);

    this.icon = makeIcon();
    this.icon.position.set(0.38, HEAD_Y, 0); // beside the head: the speech bubble is above it
    this.root.add(this.icon);
  }

  setEmotion(emotion) {
    this.emotion = EMOTIONS[emotion] ? emotion : "neutral";
    const look = EMOTIONS[this.emotion];
    for (const brow of this.brows) brow.rotation.z = look.brow * brow.userData.side;
    this.icon.userData.draw(this.emotion, look.color);
  }

  setViseme(viseme, openness) {
    this.viseme = viseme;
    this.targetOpen = openness;
  }

  /** Where the head is in the world: the speech bubble's anchor. */
  headPosition(target = new THREE.Vector3()) {
    return this.head.getWorldPosition(target);
  }

  /** One animation step: breathe, sway, turn the head towards the viewer, move the mouth. */
  update(seconds, dt, viewer) {
    this.torso.position.y = Math.sin(seconds * 1.7) * 0.008;
    this.torso.rotation.z = Math.sin(seconds * 0.6) * 0.02;
    if (viewer) {
      const local = this.root.worldToLocal(viewer.clone());
      const yaw = Math.atan2(local.x, local.z);
      this.head.rotation.y = THREE.MathUtils.clamp(yaw, -1.1, 1.1);
    }
    this.mouthOpen += (this.targetOpen - this.mouthOpen) * Math.min(1, dt * 25);
    const smile = EMOTIONS[this.emotion].smile;
    this.mouth.scale.set(1.2 + 0.25 * smile - 0.3 * this.mouthOpen, 0.15 + 0.9 * this.mouthOpen, 0.4);
  }
}

function makeIcon() {
  // the emotion as a coloured badge with its word on a sprite (it faces the viewer, in VR
  // too); a word rather than an emoji, which needs a colour-emoji font the machine may lack
  const canvas = document.createElement("canvas");
  canvas.width = 256;
  canvas.height = 64;
  const texture = new THREE.CanvasTexture(canvas);
  texture.colorSpace = THREE.SRGBColorSpace;
  const sprite = new THREE.Sprite(new THREE.SpriteMaterial({ map: texture, transparent: true }));
  sprite.scale.set(0.32, 0.08, 1);
  sprite.visible = false;
  sprite.userData.draw = (word, color) => {
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, canvas.width, canvas.height);
    sprite.visible = Boolean(color);
    if (!color) return;
    g.fillStyle = color;
    g.beginPath();
    g.roundRect(4, 4, canvas.width - 8, canvas.height - 8, 24);
    g.fill();
    g.fillStyle = "#111";
    g.font = "bold 38px sans-serif";
    g.textAlign = "center";
    g.textBaseline = "middle";
    g.fillText(word, canvas.width / 2, canvas.height / 2 + 2);
    texture.needsUpdate = true;
  };
  return sprite;
}
