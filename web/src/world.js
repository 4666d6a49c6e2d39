// The layered world: world_preview.glb (or the full world.glb), orbit or walk, one toggle per layer.
import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { fitToCanvas } from "./viewport.js";

export class WorldViewer {
  constructor(canvas, toggles) {
    this.canvas = canvas;
    this.toggles = toggles;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0x111827);
    this.camera = new THREE.PerspectiveCamera(70, 2, 0.01, 1000);
    this.camera.position.set(0, 0, 0.01);
    this.orbit = new OrbitControls(this.camera, canvas);
    this.orbit.addEventListener("change", () => this.render());
    this.mode = "orbit";
    this.keys = new Set();
    this.look = { yaw: 0, pitch: 0 };
    this.root = null;
    this.setupWalk();
  }

  setupWalk() {
    window.addEventListener("keydown", (e) => this.keys.add(e.key.toLowerCase()));
    window.addEventListener("keyup", (e) => this.keys.delete(e.key.toLowerCase()));
    let dragging = null;
    this.canvas.addEventListener("pointerdown", (e) => (dragging = { x: e.clientX, y: e.clientY }));
    window.addEventListener("pointerup", () => (dragging = null));
    this.canvas.addEventListener("pointermove", (e) => {
      if (!dragging || this.mode !== "walk") return;
      this.look.yaw -= (e.clientX - dragging.x) * 0.004;
      this.look.pitch = Math.max(-1.4, Math.min(1.4, this.look.pitch - (e.clientY - dragging.y) * 0.004));
      dragging = { x: e.clientX, y: e.clientY };
      this.render();
    });
    const tick = () => {
      if (this.mode === "walk" && this.keys.size) {
        const step = 0.03;
        const forward = new THREE.Vector3(-Math.sin(this.look.yaw), 0, -Math.cos(this.look.yaw));
        const right = new THREE.Vector3(-forward.z, 0, forward.x);
        if (this.keys.has("w")) this.camera.position.addScaledVector(forward, step);
        if (this.keys.has("s")) this.camera.position.addScaledVector(forward, -step);
        if (this.keys.has("d")) this.camera.position.addScaledVector(right, step);
        if (this.keys.has("a")) this.camera.position.addScaledVector(right, -step);
        this.render();
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  setMode(mode) {
    this.mode = mode;
    this.orbit.enabled = mode === "orbit";
    if (mode === "walk") this.camera.position.set(0, 0, 0);
    else this.camera.position.set(0, 0, 0.01);
    this.render();
  }

  async load(url) {
    this.canvas.dataset.loaded = "";
    const gltf = await new GLTFLoader().loadAsync(url);
    if (this.root) this.scene.remove(this.root);
    this.root = gltf.scene;
    this.scene.add(this.root);
    this.toggles.innerHTML = "";
    for (const node of this.root.children) {
      const label = document.createElement("label");
      label.className = "inline";
      label.innerHTML = `<input type="checkbox" checked data-layer="${node.name}"> ${node.name}`;
      label.querySelector("input").addEventListener("change", (e) => {
        node.visible = e.target.checked;
        this.render();
      });
      this.toggles.append(label);
    }
    this.render();
    this.canvas.dataset.loaded = "1";
  }

  render() {
    fitToCanvas(this.renderer, this.camera, this.canvas);
    if (this.mode === "walk") {
      const { yaw, pitch } = this.look;
      const target = this.camera.position.clone().add(
        new THREE.Vector3(-Math.sin(yaw) * Math.cos(pitch), Math.sin(pitch), -Math.cos(yaw) * Math.cos(pitch)),
      );
      this.camera.lookAt(target);
    }
    this.renderer.render(this.scene, this.camera);
  }
}
