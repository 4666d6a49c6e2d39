// The job list, kept live by the one list-level event stream (GET /v1/events).
import { api } from "./api.js";

export class JobList {
  constructor(element, onOpen) {
    this.element = element;
    this.onOpen = onOpen;
    this.jobs = new Map();
  }

  async start() {
    const page = await api("GET", "/v1/worlds?limit=50");
    for (const job of page.items.reverse()) this.update(job);
    const stream = new EventSource("/v1/events");
    stream.addEventListener("job", (event) => this.update(JSON.parse(event.data)));
  }

  update(job) {
    const known = this.jobs.get(job.id);
    if (known && new Date(known.updated_at) > new Date(job.updated_at)) return;
    this.jobs.set(job.id, job);
    this.render(job);
    if (this.listener) this.listener(job);
  }

  render(job) {
    let item = this.element.querySelector(`[data-id="${job.id}"]`);
    if (job.deleted) {
      if (item) item.remove();
      return;
    }
    if (!item) {
      item = document.createElement("li");
      item.dataset.id = job.id;
      item.addEventListener("click", () => this.onOpen(this.jobs.get(job.id)));
      this.element.prepend(item);
    }
    const percent = Math.round(job.progress * 100);
    item.className = job.status;
    item.dataset.status = job.status;
    item.dataset.progress = String(percent);
    const title = job.request.prompt || (job.request.source_world_id ? "re-layered world" : "uploaded panorama");
    const error = job.error ? `<div class="error">${escape(job.error.code)}: ${escape(job.error.message)}</div>` : "";
    item.innerHTML = `<strong>${escape(title.slice(0, 60))}</strong>
      <div><span class="status">${job.status}</span> · ${job.stage || "—"} · <span class="percent">${percent}%</span></div>
      <div class="bar"><span style="width:${percent}%"></span></div>${error}`;
  }
}

function escape(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}
