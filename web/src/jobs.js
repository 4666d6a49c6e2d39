// The world list, kept live by the one list-level event stream (GET /v1/events). Events after the
// first one for a world may leave out its request: updates are merged into what is known.
import { api } from "./api.js";
import { ago, escape, isActive, statusDetail, statusWord, worldTitle } from "./format.js";

export class JobList {
  constructor(element, empty, onOpen) {
    this.element = element;
    this.empty = empty;
    this.onOpen = onOpen;
    this.jobs = new Map();
    this.listeners = [];
    this.openId = null;
    setInterval(() => this.jobs.forEach((job) => this.render(job)), 30_000); // "2 min ago" stays true
  }

  async start() {
    const page = await api("GET", "/v1/worlds?limit=50");
    for (const job of page.items.reverse()) this.update(job);
    this.showEmpty();
    const stream = new EventSource("/v1/events");
    stream.addEventListener("job", (event) => this.update(JSON.parse(event.data)));
  }

  update(incoming) {
    const known = this.jobs.get(incoming.id);
    if (known && new Date(known.updated_at) > new Date(incoming.updated_at)) return known;
    const job = known ? { ...known, ...incoming } : incoming;
    this.jobs.set(job.id, job);
    this.render(job);
    this.showEmpty();
    for (const listener of this.listeners) listener(job, known);
    return job;
  }

  remove(id) {
    this.jobs.delete(id);
    this.element.querySelector(`[data-id="${id}"]`)?.remove();
    this.showEmpty();
  }

  markOpen(id) {
    this.openId = id;
    for (const item of this.element.children) {
      const open = item.dataset.id === id;
      item.classList.toggle("open", open);
      if (open) item.setAttribute("aria-current", "true");
      else item.removeAttribute("aria-current");
    }
  }

  showEmpty() {
    this.empty.hidden = this.element.children.length > 0;
  }

  render(job) {
    let item = this.element.querySelector(`[data-id="${job.id}"]`);
    if (job.deleted) {
      if (item) item.remove();
      this.jobs.delete(job.id);
      return;
    }
    if (!item) {
      item = document.createElement("li");
      item.dataset.id = job.id;
      item.tabIndex = 0;
      item.addEventListener("click", () => this.onOpen(this.jobs.get(job.id)));
      item.addEventListener("keydown", (e) => e.key === "Enter" && this.onOpen(this.jobs.get(job.id)));
      this.element.prepend(item);
    }
    const percent = Math.round(job.progress * 100);
    item.className = `${job.status}${job.id === this.openId ? " open" : ""}`;
    item.dataset.status = job.status;
    item.dataset.progress = String(percent);
    const thumb = job.links && job.links.thumbnail
      ? `<img class="thumb" src="${escape(job.links.thumbnail)}" alt="" loading="lazy">`
      : `<div class="thumb"></div>`;
    const warnings = job.warnings && job.warnings.length
      ? `<span class="chip warning" title="${escape(job.warnings.join("\n"))}">${job.warnings.length} warning${job.warnings.length > 1 ? "s" : ""}</span>` : "";
    const when = isActive(job) ? `${percent}%` : ago(job.created_at);
    const bar = isActive(job) ? `<div class="bar"><span style="width:${percent}%"></span></div>` : "";
    const error = job.error && job.status === "failed" ? `<div class="error"><span class="clamp">${escape(job.error.message)}</span></div>` : "";
    item.innerHTML = `${thumb}<div class="world-info">
      <div class="world-head"><span class="world-title">${escape(worldTitle(job, this.jobs))}</span>
        <span class="world-when">${escape(when)}</span></div>
      <div class="meta"><span class="chip status ${job.status}">${escape(statusWord(job))}</span>${warnings}
        <span class="detail">${escape(statusDetail(job))}</span></div>${bar}${error}</div>`;
  }
}
