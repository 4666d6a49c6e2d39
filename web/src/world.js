// The layered world: world_preview.glb (or the full world.glb), orbit or walk, one toggle per layer.
// glTF vertex colours are linear (the file says so); three.js writes sRGB to the screen, so a
// panorama pixel and its place in the world show the same colour.
// Walking moves at a speed per second that scales with the world, and stops short of the mesh
// (rays against a bounding-volume hierarchy, three-mesh-bvh), so one cannot walk through walls.
import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { acceleratedRaycast, computeBoundsTree, disposeBoundsTree } from "three-mesh-bvh";
import { fitToCanvas } from "./viewport.js";

THREE.BufferGeometry.prototype.computeBoundsTree = computeBoundsTree;
THREE.BufferGeometry.prototype.disposeBoundsTree = disposeBoundsTree;
THREE.Mesh.prototype.raycast = acceleratedRaycast;

const WALK_KEYS = { w: "w", arrowup: "w", s: "s", arrowdown: "s", a: "a", arrowleft: "a", d: "d", arrowright: "d" };
const typing = (target) => target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));

export class WorldViewer {
  constructor(canvas, toggles, pad) {
    this.canvas = canvas;
    this.toggles = toggles;
    this.pad = pad;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0x0f1422);
    this.camera = new THREE.PerspectiveCamera(70, 2, 0.01, 5000);
    this.orbit = new OrbitControls(this.camera, canvas);
    this.orbit.addEventListener("change", () => this.render());
    this.mode = "orbit";
    this.keys = new Set();
    this.look = { yaw: 0, pitch: 0 };
    this.root = null;
    this.radius = 1; // how far the walls are: the background's median distance from the centre
    this.raycaster = new THREE.Raycaster();
    this.raycaster.firstHitOnly = true;
    this.setupWalk();
    this.resetCamera();
  }

  // Units per second: reaching the walls takes about four seconds whatever the world's scale.
  get walkSpeed() {
    return this.radius / 4;
  }

  setupWalk() {
    window.addEventListener("keydown", (e) => {
      const key = WALK_KEYS[e.key.toLowerCase()];
      if (!key || this.mode !== "walk" || typing(e.target) || !this.canvas.offsetParent) return;
      this.keys.add(key);
      e.preventDefault();
    });
    window.addEventListener("keyup", (e) => this.keys.delete(WALK_KEYS[e.key.toLowerCase()]));
    window.addEventListener("blur", () => this.keys.clear());
    for (const button of this.pad.querySelectorAll("button")) {
      const press = (down) => (e) => {
        e.preventDefault();
        button.classList.toggle("pressed", down);
        if (down) this.keys.add(button.dataset.key);
        else this.keys.delete(button.dataset.key);
      };
      button.addEventListener("pointerdown", press(true));
      for (const end of ["pointerup", "pointerleave", "pointercancel"]) button.addEventListener(end, press(false));
    }
    let dragging = null;
    this.canvas.addEventListener("pointerdown", (e) => {
      dragging = { x: e.clientX, y: e.clientY };
      this.canvas.focus({ preventScroll: true });
    });
    window.addEventListener("pointerup", () => (dragging = null));
    this.canvas.addEventListener("pointermove", (e) => {
      if (!dragging || this.mode !== "walk") return;
      this.look.yaw -= (e.clientX - dragging.x) * 0.004;
      this.look.pitch = Math.max(-1.4, Math.min(1.4, this.look.pitch - (e.clientY - dragging.y) * 0.004));
      dragging = { x: e.clientX, y: e.clientY };
      this.render();
    });
    let last = performance.now();
    const tick = (now) => {
      const seconds = Math.min((now - last) / 1000, 0.25); // a stalled tab does not teleport
      last = now;
      if (this.mode === "walk" && this.keys.size && this.root) this.step(seconds);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  step(seconds) {
    const forward = new THREE.Vector3(-Math.sin(this.look.yaw), 0, -Math.cos(this.look.yaw));
    const right = new THREE.Vector3(-forward.z, 0, forward.x);
    const move = new THREE.Vector3();
    if (this.keys.has("w")) move.add(forward);
    if (this.keys.has("s")) move.sub(forward);
    if (this.keys.has("d")) move.add(right);
    if (this.keys.has("a")) move.sub(right);
    if (move.lengthSq() === 0) return;
    move.normalize();
    const distance = this.walkSpeed * seconds;
    const margin = this.radius * 0.04;
    this.raycaster.set(this.camera.position, move);
    this.raycaster.far = distance + margin;
    const hit = this.raycaster.intersectObjects(this.solid(), false)[0];
    const allowed = hit ? Math.max(0, hit.distance - margin) : distance;
    this.camera.position.addScaledVector(move, Math.min(distance, allowed));
    this.render();
  }

  // What one cannot walk through: every visible layer except the sky, which surrounds everything.
  solid() {
    const meshes = [];
    if (!this.root) return meshes;
    for (const node of this.root.children) {
      if (!node.visible || node.name === "sky") continue;
      node.traverse((child) => {
        if (!child.isMesh) return;
        if (!child.geometry.boundsTree) child.geometry.computeBoundsTree();
        meshes.push(child);
      });
    }
    return meshes;
  }

  setMode(mode) {
    this.mode = mode;
    this.keys.clear();
    this.orbit.enabled = mode === "orbit";
    this.pad.hidden = mode !== "walk";
    this.resetCamera();
    if (mode === "walk") this.canvas.focus({ preventScroll: true });
  }

  // Orbit: around the centre, from a little behind it, so the wheel (or a pinch) zooms for real.
  // Walk: standing at the centre, looking at the middle of the panorama.
  resetCamera() {
    this.look = { yaw: 0, pitch: 0 };
    this.orbit.target.set(0, 0, 0);
    this.orbit.minDistance = this.radius * 0.01;
    this.orbit.maxDistance = this.radius * 2;
    if (this.mode === "walk") {
      this.camera.position.set(0, 0, 0);
    } else {
      this.camera.position.set(0, this.radius * 0.025, this.radius * 0.18);
      this.orbit.update();
    }
    this.render();
  }

  clear() {
    if (this.root) {
      this.scene.remove(this.root);
      this.root.traverse((child) => {
        if (!child.isMesh) return;
        child.geometry.disposeBoundsTree?.();
        child.geometry.dispose();
      });
    }
    this.root = null;
    this.toggles.innerHTML = "";
    this.canvas.dataset.loaded = "";
    this.render();
  }

  // Loads `url` unless `stillWanted()` says another world was opened meanwhile.
  async load(url, stillWanted = () => true) {
    this.canvas.dataset.loaded = "";
    const gltf = await new GLTFLoader().loadAsync(url);
    if (!stillWanted()) return;
    this.clear();
    this.root = gltf.scene;
    this.scene.add(this.root);
    this.radius = roomRadius(this.root.getObjectByName("background") || this.root);
    for (const node of this.root.children) {
      const label = document.createElement("label");
      label.innerHTML = `<input type="checkbox" checked data-layer="${node.name}"> ${layerName(node.name)}`;
      label.querySelector("input").addEventListener("change", (e) => {
        node.visible = e.target.checked;
        this.render();
      });
      this.toggles.append(label);
    }
    this.resetCamera();
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
    const { x, y, z } = this.camera.position;
    this.canvas.dataset.camera = [x, y, z].map((v) => v.toFixed(4)).join(",");
    this.canvas.dataset.radius = this.radius.toFixed(4);
    this.canvas.dataset.walkSpeed = this.walkSpeed.toFixed(4);
  }
}

// The median distance of (up to 20 000 of) the layer's vertices from the centre, where the camera stands.
function roomRadius(node) {
  const distances = [];
  const point = new THREE.Vector3();
  node.updateMatrixWorld(true);
  node.traverse((child) => {
    if (!child.isMesh) return;
    const positions = child.geometry.attributes.position;
    const stride = Math.max(1, Math.floor(positions.count / 20000));
    for (let i = 0; i < positions.count; i += stride) {
      distances.push(point.fromBufferAttribute(positions, i).applyMatrix4(child.matrixWorld).length());
    }
  });
  if (!distances.length) return 1;
  distances.sort((a, b) => a - b);
  return Math.max(distances[distances.length >> 1], 1e-3);
}

function layerName(name) {
  if (name === "background") return "Background";
  if (name === "sky") return "Sky";
  const match = /^fg(\d)/.exec(name);
  return match ? `Objects ${match[1]}` : name;
}
