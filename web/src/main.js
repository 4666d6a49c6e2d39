// The worldgen page: submit, follow live, look around the panorama, walk the world, re-layer it.
import { api, serverInfo } from "./api.js";
import { BoxPicker } from "./boxes.js";
import { showError, setupForm, showDefaults } from "./form.js";
import { worldTitle } from "./format.js";
import { JobList } from "./jobs.js";
import { PanoramaViewer } from "./panorama.js";
import { WorldPanel } from "./viewer.js";
import { WorldViewer } from "./world.js";

const $ = (selector) => document.querySelector(selector);
const narrow = window.matchMedia("(max-width: 860px)");
const reveal = () => narrow.matches && $("#viewer").scrollIntoView({ behavior: "smooth", block: "start" });

const picker = new BoxPicker($("#box-canvas"), $("#box-list"), (count) => ($("#relayer").disabled = count === 0));
const jobs = new JobList($("#job-list"), $("#jobs-empty"), (job) => {
  panel.open(job);
  reveal();
});
const panel = new WorldPanel({
  panorama: new PanoramaViewer($("#panorama-canvas")),
  world: new WorldViewer($("#world-canvas"), $("#layer-toggles"), $("#walk-pad")),
  picker,
  jobs,
});
panel.close();

// A world that ends while the page is open says so, wherever one is looking.
jobs.listeners.push((job, before) => {
  panel.update(job, before);
  if (!before || !["queued", "starting", "running"].includes(before.status)) return;
  const title = `“${worldTitle(job, jobs.jobs)}”`;
  if (job.status === "succeeded") panel.toast(`${title} is ready`, () => panel.open(jobs.jobs.get(job.id)));
  if (job.status === "failed") panel.toast(`${title} failed: ${job.error ? job.error.message : "see its details"}`);
});

setupForm($("#world-form"), (job) => {
  panel.open(jobs.update(job));
  reveal();
});
for (const radio of document.querySelectorAll("input[name=nav]")) {
  radio.addEventListener("change", (e) => {
    panel.world.setMode(e.target.value);
    $("#nav-hint").textContent = e.target.value === "walk"
      ? "W A S D or the arrows to walk (or the pad), drag to look around."
      : "Drag to turn, scroll or pinch to zoom.";
  });
}
$("#relayer").addEventListener("click", async () => {
  const errors = $("#box-error");
  errors.hidden = true;
  try {
    const job = await api("POST", "/v1/worlds", {
      source_world_id: panel.current.id,
      objects_fg1: picker.objects("fg1"),
      objects_fg2: picker.objects("fg2"),
    });
    panel.open(jobs.update(job));
  } catch (error) {
    showError(null, errors, error);
  }
});

async function start() {
  const info = await serverInfo();
  $("#tiny-banner").hidden = !(info && info.models && info.models.tiny);
  showDefaults($("#world-form"), info);
  await jobs.start();
  document.body.dataset.ready = "1";
}
start();
