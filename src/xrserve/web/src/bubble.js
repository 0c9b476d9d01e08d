// bubble.js: the character's words as a speech bubble in the 3D scene. A sprite, so it
// always faces the viewer (each eye, in a headset); its anchor is the bottom of the tail,
// and that anchor is kept at the character's head, so the bubble floats just above it.
// Drawn last and without depth test: a bubble hidden in a tree is no use.

import * as THREE from "three";

const WIDTH_PX = 512;
const WIDTH_M = 0.9;
const FONT_PX = 30;
const LINE_PX = 38;
const PAD_PX = 22;
const TAIL_PX = 26;
const MAX_LINES = 8;

export class SpeechBubble {
  constructor() {
    this.text = "";
    this.canvas = document.createElement("canvas");
    this.texture = new THREE.CanvasTexture(this.canvas);
    this.texture.colorSpace = THREE.SRGBColorSpace;
    this.texture.anisotropy = 4;
    const material = new THREE.SpriteMaterial({ map: this.texture, transparent: true, depthTest: false });
    this.sprite = new THREE.Sprite(material);
    this.sprite.name = "speech-bubble";
    this.sprite.renderOrder = 10;
    this.sprite.visible = false;
    this.sprite.center.set(0.5, 0); // the anchor is the tail's tip: bottom middle
  }

  /** Show `text` (the whole answer so far); empty hides the bubble. */
  setText(text) {
    this.text = text;
    this.sprite.visible = Boolean(text);
    if (text) this.#draw(text);
  }

  /** Keep the anchor at `point` (world coordinates); the transparent margin under the tail lifts the drawn bubble clear of the head. */
  follow(point) {
    this.sprite.position.copy(point);
  }

  #draw(text) {
    const g = this.canvas.getContext("2d");
    g.font = `${FONT_PX}px sans-serif`;
    let lines = wrap(g, text, WIDTH_PX - 2 * PAD_PX);
    if (lines.length > MAX_LINES) lines = ["…", ...lines.slice(-(MAX_LINES - 1))]; // the newest words stay
    const height = lines.length * LINE_PX + 2 * PAD_PX + TAIL_PX + 40; // 40: clear of the head
    this.canvas.width = WIDTH_PX;
    this.canvas.height = height;
    const box = height - TAIL_PX - 40;
    g.fillStyle = "rgba(255, 255, 255, 0.94)";
    g.strokeStyle = "#333";
    g.lineWidth = 3;
    g.beginPath();
    g.roundRect(2, 2, WIDTH_PX - 4, box - 4, 24);
    g.moveTo(WIDTH_PX / 2 - 18, box - 3);
    g.lineTo(WIDTH_PX / 2, box + TAIL_PX);
    g.lineTo(WIDTH_PX / 2 + 18, box - 3);
    g.fill();
    g.stroke();
    g.fillStyle = "#111";
    g.font = `${FONT_PX}px sans-serif`;
    g.textBaseline = "top";
    lines.forEach((line, i) => g.fillText(line, PAD_PX, PAD_PX + i * LINE_PX));
    this.texture.dispose(); // the canvas changed size: a new texture on the GPU
    this.texture.needsUpdate = true;
    this.sprite.scale.set(WIDTH_M, (WIDTH_M * height) / WIDTH_PX, 1);
  }
}

function wrap(g, text, width) {
  const lines = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (g.measureText(next).width <= width || !line) line = next;
    else {
      lines.push(line);
      line = word;
    }
  }
  if (line) lines.push(line);
  return lines;
}
