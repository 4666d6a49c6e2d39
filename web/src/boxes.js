// Drawing boxes on a finished world's panorama, in the panorama's own pixels, to re-layer it.
// The canvas is drawn at its on-screen resolution: the panorama scaled in, the boxes over it.
export class BoxPicker {
  constructor(canvas, list) {
    this.image = new Image();
    this.canvas = canvas;
    this.list = list;
    this.boxes = [];
    let start = null;
    const point = (e) => {
      const rect = canvas.getBoundingClientRect();
      const scale = this.image.naturalWidth / rect.width;
      return [(e.clientX - rect.left) * scale, (e.clientY - rect.top) * scale];
    };
    canvas.addEventListener("pointerdown", (e) => (start = point(e)));
    canvas.addEventListener("pointermove", (e) => start && this.draw([...start, ...point(e)]));
    canvas.addEventListener("pointerup", (e) => {
      if (!start) return;
      const [x0, y0] = start;
      const [x1, y1] = point(e);
      start = null;
      const box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)].map(Math.round);
      if (box[2] - box[0] > 2 && box[3] - box[1] > 2) this.add(box);
      this.draw();
    });
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  reset(url) {
    this.boxes = [];
    this.image.onload = () => this.draw();
    this.image.src = url;
    this.renderList();
  }

  add(box) {
    const label = document.querySelector("#box-label").value.trim() || "object";
    const layer = document.querySelector("#box-layer").value;
    this.boxes.push({ label, box, layer });
    this.renderList();
  }

  draw(pending) {
    const { naturalWidth: width, naturalHeight: height } = this.image;
    if (!width || !this.canvas.clientWidth) return;
    this.canvas.width = this.canvas.clientWidth * devicePixelRatio;
    this.canvas.height = Math.round((this.canvas.width * height) / width);
    const scale = this.canvas.width / width;
    const context = this.canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.drawImage(this.image, 0, 0, this.canvas.width, this.canvas.height);
    context.lineWidth = 3 * devicePixelRatio;
    const stroke = (box, colour) => {
      context.strokeStyle = colour;
      context.strokeRect(box[0] * scale, box[1] * scale, (box[2] - box[0]) * scale, (box[3] - box[1]) * scale);
    };
    for (const { box, layer } of this.boxes) stroke(box, layer === "fg1" ? "#22c55e" : "#f97316");
    if (pending) stroke(pending, "#60a5fa");
  }

  renderList() {
    this.list.innerHTML = this.boxes.map((b, i) => `<li>${i + 1}. ${b.layer}: ${b.label} [${b.box.join(", ")}]</li>`).join("");
  }

  objects(layer) {
    return this.boxes.filter((b) => b.layer === layer).map(({ label, box }) => ({ label, box }));
  }
}
