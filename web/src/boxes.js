// Marking objects on a finished world's panorama, in the panorama's own pixels, to re-layer it.
// Draw a box first; it joins the list below, where it is named, given a layer or removed.
// The pointer is captured while drawing, so letting go outside the canvas still ends the box.
import { escape } from "./format.js";

const COLOURS = { fg1: "#22c55e", fg2: "#f97316" };

export class BoxPicker {
  constructor(canvas, list, onChange) {
    this.image = new Image();
    this.canvas = canvas;
    this.list = list;
    this.onChange = onChange;
    this.boxes = [];
    let start = null;
    let pending = null;
    const point = (e) => {
      const rect = canvas.getBoundingClientRect();
      const scale = this.image.naturalWidth / rect.width;
      const x = Math.max(0, Math.min(rect.width, e.clientX - rect.left));
      const y = Math.max(0, Math.min(rect.height, e.clientY - rect.top));
      return [x * scale, y * scale];
    };
    const end = () => {
      start = null;
      pending = null;
      this.draw();
    };
    canvas.addEventListener("pointerdown", (e) => {
      if (!this.image.naturalWidth) return;
      start = point(e);
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!start) return;
      pending = [...start, ...point(e)];
      this.draw(pending);
    });
    canvas.addEventListener("pointerup", (e) => {
      if (!start) return;
      const [x0, y0] = start;
      const [x1, y1] = point(e);
      const box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)].map(Math.round);
      end();
      if (box[2] - box[0] > 2 && box[3] - box[1] > 2) this.add(box);
    });
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("lostpointercapture", () => start && end());
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  reset(url) {
    this.boxes = [];
    this.image = new Image();
    if (url) {
      this.image.onload = () => this.draw();
      this.image.src = url;
    }
    this.renderList();
    this.draw();
  }

  add(box) {
    this.boxes.push({ label: `object ${this.boxes.length + 1}`, box, layer: "fg1" });
    this.renderList();
    this.draw();
    const input = this.list.querySelector("li:last-child input");
    input.focus();
    input.select();
  }

  remove(index) {
    this.boxes.splice(index, 1);
    this.renderList();
    this.draw();
  }

  draw(pending) {
    const context = this.canvas.getContext("2d");
    const { naturalWidth: width, naturalHeight: height } = this.image;
    if (!width || !this.canvas.clientWidth) {
      context.clearRect(0, 0, this.canvas.width, this.canvas.height);
      return;
    }
    this.canvas.width = this.canvas.clientWidth * devicePixelRatio;
    this.canvas.height = Math.round((this.canvas.width * height) / width);
    const scale = this.canvas.width / width;
    context.imageSmoothingEnabled = false;
    context.drawImage(this.image, 0, 0, this.canvas.width, this.canvas.height);
    context.lineWidth = 3 * devicePixelRatio;
    context.font = `${13 * devicePixelRatio}px system-ui, sans-serif`;
    const stroke = (box, colour, text) => {
      const [x, y, w, h] = [box[0] * scale, box[1] * scale, (box[2] - box[0]) * scale, (box[3] - box[1]) * scale];
      context.strokeStyle = colour;
      context.strokeRect(x, y, w, h);
      if (!text) return;
      context.fillStyle = colour;
      const label = context.measureText(text).width + 8 * devicePixelRatio;
      context.fillRect(x, Math.max(0, y - 18 * devicePixelRatio), label, 18 * devicePixelRatio);
      context.fillStyle = "#fff";
      context.fillText(text, x + 4 * devicePixelRatio, Math.max(0, y - 18 * devicePixelRatio) + 13 * devicePixelRatio);
    };
    this.boxes.forEach(({ box, layer }, i) => stroke(box, COLOURS[layer], String(i + 1)));
    if (pending) stroke(pending, "#60a5fa");
  }

  renderList() {
    this.list.innerHTML = this.boxes
      .map((b, i) => `<li data-index="${i}"><span class="swatch" style="background:${COLOURS[b.layer]}"></span>
        <input aria-label="name of object ${i + 1}" value="${escape(b.label)}">
        <select aria-label="layer of object ${i + 1}"><option value="fg1"${b.layer === "fg1" ? " selected" : ""}>Layer 1</option>
          <option value="fg2"${b.layer === "fg2" ? " selected" : ""}>Layer 2</option></select>
        <button type="button" class="secondary" aria-label="remove object ${i + 1}">Remove</button></li>`)
      .join("");
    for (const item of this.list.children) {
      const box = this.boxes[Number(item.dataset.index)];
      item.querySelector("input").addEventListener("input", (e) => (box.label = e.target.value));
      item.querySelector("select").addEventListener("change", (e) => {
        box.layer = e.target.value;
        item.querySelector(".swatch").style.background = COLOURS[box.layer];
        this.draw();
      });
      item.querySelector("button").addEventListener("click", () => this.remove(Number(item.dataset.index)));
    }
    if (this.onChange) this.onChange(this.boxes.length);
  }

  objects(layer) {
    return this.boxes
      .filter((b) => b.layer === layer)
      .map(({ label, box }) => ({ label: label.trim() || "object", box }));
  }
}
