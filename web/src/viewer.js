// The open world: its progress while it is made, its error if it failed, and once ready the
// panorama, the 3D world, the object picker and the downloads. Opening another world clears
// everything the previous one put on screen, and loads still in flight for it are dropped.
import { api } from "./api.js";
import { bytes, escape, isActive, stageWord, statusDetail, statusWord, worldTitle } from "./format.js";

const $ = (selector) => document.querySelector(selector);
const GROUPS = ["world", "layer", "image", "data"];

export class WorldPanel {
  constructor({ panorama, world, picker, jobs }) {
    this.panorama = panorama;
    this.world = world;
    this.picker = picker;
    this.jobs = jobs;
    this.current = null;
    this.token = 0;
    this.element = $("#viewer");
    $("#cancel-world").addEventListener("click", () => this.cancel());
    $("#delete-world").addEventListener("click", () => this.delete());
    $("#build-world").addEventListener("click", () => this.buildWorld());
    for (const button of document.querySelectorAll(".tabs button")) button.addEventListener("click", () => this.showView(button.dataset.view));
  }

  showView(name) {
    for (const button of document.querySelectorAll(".tabs button")) button.classList.toggle("active", button.dataset.view === name);
    for (const view of ["panorama", "world", "boxes"]) $(`#${view}-view`).hidden = view !== name;
    if (name === "panorama") this.panorama.render();
    if (name === "world") this.world.render();
    if (name === "boxes") this.picker.draw();
  }

  // Nothing open: the first-visit placeholder.
  close() {
    this.current = null;
    this.token += 1;
    this.jobs.markOpen(null);
    this.clearViews();
    this.element.dataset.state = "empty";
    $("#viewer-title").textContent = "Your world will appear here";
    $("#viewer-sub").textContent = "";
    for (const id of ["#viewer-progress", "#viewer-failed", "#warnings", "#viewer-ready", "#cancel-world", "#delete-world", "#build-world"]) $(id).hidden = true;
    $("#viewer-empty").hidden = false;
  }

  clearViews() {
    this.panorama.clear();
    this.world.clear();
    this.picker.reset(null);
    $("#downloads").innerHTML = "";
    $("#download-all").removeAttribute("href");
    $("#load-full").disabled = true;
    $("#load-full").onclick = null;
    $("#box-error").hidden = true;
    this.resetDelete();
  }

  open(job) {
    this.current = job;
    this.token += 1;
    this.element.dataset.id = job.id;
    this.jobs.markOpen(job.id);
    this.clearViews();
    $("#viewer-empty").hidden = true;
    $("#viewer-ready").hidden = true;
    this.showView("panorama");
    this.render(job);
    if (job.status === "succeeded") this.loadReady(job);
  }

  // A change to a world: redraw it if it is the open one; load it when it has just finished.
  update(job, before) {
    if (!this.current || job.id !== this.current.id) return;
    const finished = job.status === "succeeded" && this.current.status !== "succeeded";
    this.current = job;
    this.render(job);
    if (finished) this.loadReady(job);
    if (job.deleted) this.close();
    void before;
  }

  render(job) {
    const active = isActive(job);
    this.element.dataset.state = active ? "active" : job.status;
    $("#viewer-title").textContent = worldTitle(job, this.jobs.jobs);
    const seed = job.seed !== undefined ? ` · seed ${job.seed}` : "";
    $("#viewer-sub").textContent = `${statusWord(job)} · ${statusDetail(job)}${job.status === "succeeded" ? seed : ""}`;
    $("#cancel-world").hidden = !active;
    $("#build-world").hidden = !(job.status === "succeeded" && job.request && job.request.stage === "panorama");
    $("#delete-world").hidden = active;
    const progress = $("#viewer-progress");
    progress.hidden = !active;
    if (active) {
      const percent = Math.round(job.progress * 100);
      $("#progress-stage").textContent = job.status === "queued" ? "Queued" : stageWord(job.stage) || statusWord(job);
      $("#progress-percent").textContent = `${percent}%`;
      $("#progress-bar").style.width = `${percent}%`;
      $("#progress-message").textContent = job.status === "queued" ? statusDetail(job) : job.message || "";
    }
    const failed = $("#viewer-failed");
    failed.hidden = job.status !== "failed" && job.status !== "canceled";
    if (!failed.hidden) {
      const reason = job.error ? job.error.message : "";
      failed.textContent = job.status === "failed"
        ? `This world could not be made: it failed ${statusDetail(job)}.\n${reason}`
        : `This world was canceled ${statusDetail(job)}.`;
    }
    const warnings = $("#warnings");
    warnings.hidden = !(job.warnings && job.warnings.length);
    warnings.innerHTML = (job.warnings || []).map((w) => `<li>${escape(w)}</li>`).join("");
  }

  async loadReady(job) {
    const token = this.token;
    const wanted = () => token === this.token;
    $("#viewer-ready").hidden = false;
    const listing = await api("GET", `/v1/worlds/${job.id}/artifacts`);
    const artifacts = listing.items;
    if (!wanted()) return;
    this.renderDownloads(job, listing);
    const url = (name) => artifacts.find((a) => a.name === name)?.url;
    const hasWorld = Boolean(url("world_preview.glb") || url("world.glb"));
    $(".tabs button[data-view=world]").hidden = !hasWorld;
    const full = $("#load-full");
    full.disabled = !url("world.glb");
    full.onclick = async () => {
      full.disabled = true;
      full.textContent = "Loading the full-detail world…";
      await this.world.load(url("world.glb"), wanted);
      if (wanted()) full.textContent = "Full-detail world loaded";
    };
    full.textContent = "Load the full-detail world";
    await this.panorama.load(url("panorama.png"), wanted);
    if (!wanted()) return;
    this.picker.reset(url("panorama.png"));
    const preview = url("world_preview.glb") || url("world.glb");
    if (preview) await this.world.load(preview, wanted);
  }

  renderDownloads(job, listing) {
    const artifacts = listing.items;
    const order = (a) => {
      const group = GROUPS.indexOf(a.group);
      return group < 0 ? GROUPS.length : group;
    };
    const sorted = [...artifacts].sort((a, b) => order(a) - order(b));
    $("#downloads").innerHTML = sorted
      .map((a) => `<li data-name="${escape(a.name)}"><a href="${escape(a.url)}" download="${escape(a.name)}">${escape(a.title || a.name)}</a>
        <span class="hint">${bytes(a.size)}</span><div class="file">${escape(a.name)}</div>
        ${a.description ? `<p>${escape(a.description)}</p>` : ""}</li>`)
      .join("");
    const all = $("#download-all");
    all.href = listing.archive_url || `/v1/worlds/${job.id}/archive`;
    $("#download-all-size").textContent = `${artifacts.length} files, ${bytes(artifacts.reduce((sum, a) => sum + a.size, 0))}`;
  }

  // A panorama preview → the world built from it, without painting the panorama again.
  async buildWorld() {
    const button = $("#build-world");
    button.disabled = true;
    try {
      const job = this.jobs.update(await api("POST", "/v1/worlds", { source_world_id: this.current.id }));
      this.open(job);
    } catch (error) {
      this.toast(error.message);
    } finally {
      button.disabled = false;
    }
  }

  async cancel() {
    const job = this.current;
    const button = $("#cancel-world");
    button.disabled = true;
    try {
      this.jobs.update(await api("POST", `/v1/worlds/${job.id}/cancel`));
    } catch (error) {
      this.toast(error.message);
    } finally {
      button.disabled = false;
    }
  }

  resetDelete() {
    const button = $("#delete-world");
    button.classList.remove("confirm");
    button.textContent = "Delete";
    clearTimeout(this.deleteTimer);
  }

  // Two clicks: the first asks, the second (within 5 s) deletes.
  async delete() {
    const button = $("#delete-world");
    if (!button.classList.contains("confirm")) {
      button.classList.add("confirm");
      button.textContent = "Delete for good?";
      this.deleteTimer = setTimeout(() => this.resetDelete(), 5000);
      return;
    }
    const job = this.current;
    this.resetDelete();
    try {
      await api("DELETE", `/v1/worlds/${job.id}`);
      this.jobs.remove(job.id);
      this.close();
      this.toast(`Deleted “${worldTitle(job, this.jobs.jobs)}”`);
    } catch (error) {
      this.toast(error.message);
    }
  }

  toast(text, onClick) {
    const toast = $("#toast");
    toast.textContent = text;
    toast.hidden = false;
    toast.onclick = onClick || null;
    toast.style.cursor = onClick ? "pointer" : "";
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => (toast.hidden = true), 6000);
  }
}
