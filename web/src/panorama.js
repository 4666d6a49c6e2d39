// The panorama on the inside of a sphere: drag to look around, scroll or pinch to zoom.
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
    this.material = new THREE.MeshBasicMaterial({ color: 0x0f1422 });
    this.scene.add(new THREE.Mesh(geometry, this.material));
    let dragging = null;
    canvas.addEventListener("pointerdown", (e) => {
      dragging = { x: e.clientX, y: e.clientY };
      canvas.setPointerCapture(e.pointerId);
    });
    for (const end of ["pointerup", "pointercancel", "lostpointercapture"]) canvas.addEventListener(end, () => (dragging = null));
    canvas.addEventListener("pointermove", (e) => {
      if (!dragging) return;
      const speed = (this.camera.fov / 75) * 0.005;
      this.yaw += (e.clientX - dragging.x) * speed;
      this.pitch = Math.max(-1.5, Math.min(1.5, this.pitch + (e.clientY - dragging.y) * speed));
      dragging = { x: e.clientX, y: e.clientY };
      this.render();
    });
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      this.camera.fov = Math.max(25, Math.min(100, this.camera.fov * Math.exp(e.deltaY * 0.001)));
      this.render();
    }, { passive: false });
  }

  clear() {
    this.material.map?.dispose();
    this.material.map = null;
    this.material.color.set(0x0f1422);
    this.material.needsUpdate = true;
    this.canvas.dataset.loaded = "";
    this.render();
  }

  // Loads `url` unless `stillWanted()` says another world was opened meanwhile.
  async load(url, stillWanted = () => true) {
    this.canvas.dataset.loaded = "";
    const texture = await new THREE.TextureLoader().loadAsync(url);
    if (!stillWanted()) return texture.dispose();
    texture.colorSpace = THREE.SRGBColorSpace;
    this.material.map?.dispose();
    this.material.map = texture;
    this.material.color.set(0xffffff);
    this.material.needsUpdate = true;
    this.yaw = 0;
    this.pitch = 0;
    this.camera.fov = 75;
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
