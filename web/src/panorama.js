// The panorama on the inside of a sphere; drag to look around.
import * as THREE from "three";
import { fitToCanvas } from "./viewport.js";

export class PanoramaViewer {
  constructor(canvas) {
    this.canvas = canvas;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(75, 2, 0.1, 100);
    this.yaw = 0;
    this.pitch = 0;
    const geometry = new THREE.SphereGeometry(10, 64, 32);
    geometry.scale(-1, 1, 1); // seen from inside
    this.material = new THREE.MeshBasicMaterial();
    this.scene.add(new THREE.Mesh(geometry, this.material));
    let dragging = null;
    canvas.addEventListener("pointerdown", (e) => (dragging = { x: e.clientX, y: e.clientY }));
    window.addEventListener("pointerup", () => (dragging = null));
    canvas.addEventListener("pointermove", (e) => {
      if (!dragging) return;
      this.yaw += (e.clientX - dragging.x) * 0.005;
      this.pitch = Math.max(-1.5, Math.min(1.5, this.pitch + (e.clientY - dragging.y) * 0.005));
      dragging = { x: e.clientX, y: e.clientY };
      this.render();
    });
  }

  async load(url) {
    const texture = await new THREE.TextureLoader().loadAsync(url);
    texture.colorSpace = THREE.SRGBColorSpace;
    this.material.map = texture;
    this.material.needsUpdate = true;
    this.render();
    this.canvas.dataset.loaded = "1";
  }

  render() {
    fitToCanvas(this.renderer, this.camera, this.canvas);
    // The panorama's centre column sits at u = 0.5, which a three.js sphere maps to −x.
    const direction = new THREE.Vector3(
      -Math.cos(this.pitch) * Math.cos(this.yaw), Math.sin(this.pitch), -Math.cos(this.pitch) * Math.sin(this.yaw),
    );
    this.camera.lookAt(direction);
    this.renderer.render(this.scene, this.camera);
  }
}
