// The worldgen page: submit, follow live, look around the panorama, walk the world, re-layer it.
import { api } from "./api.js";
import { BoxPicker } from "./boxes.js";
import { setupForm, showError } from "./form.js";
import { JobList } from "./jobs.js";
import { PanoramaViewer } from "./panorama.js";
import { WorldViewer } from "./world.js";

const $ = (selector) => document.querySelector(selector);
const panorama = new PanoramaViewer($("#panorama-canvas"));
const world = new WorldViewer($("#world-canvas"), $("#layer-toggles"));
const picker = new BoxPicker($("#box-canvas"), $("#box-list"));
let current = null;

function showView(name) {
  for (const button of document.querySelectorAll(".tabs button")) button.classList.toggle("active", button.dataset.view === name);
  for (const view of ["panorama", "world", "boxes"]) $(`#${view}-view`).hidden = view !== name;
  if (name === "panorama") panorama.render();
  if (name === "world") world.render();
}

async function open(job) {
  current = job;
  $("#viewer").hidden = false;
  $("#viewer-title").textContent = job.request.prompt || job.id;
  const list = $("#downloads");
  list.innerHTML = "";
  if (job.status !== "succeeded") {
    list.innerHTML = `<li>${job.status}${job.error ? `: ${job.error.message}` : ""}</li>`;
    return;
  }
  const artifacts = (await api("GET", `/v1/worlds/${job.id}/artifacts`)).items;
  list.innerHTML = artifacts
    .map((a) => `<li><a href="${a.url}" download="${a.name}">${a.name}</a> (${(a.size / 1e6).toFixed(2)} MB)</li>`)
    .join("");
  const url = (name) => artifacts.find((a) => a.name === name)?.url;
  showView("panorama");
  await panorama.load(url("panorama.png"));
  picker.reset(url("panorama.png"));
  if (url("world_preview.glb")) await world.load(url("world_preview.glb"));
  $("#load-full").disabled = !url("world.glb");
  $("#load-full").onclick = () => world.load(url("world.glb"));
}

const jobs = new JobList($("#job-list"), open);
jobs.listener = (job) => {
  if (current && job.id === current.id && job.status === "succeeded" && current.status !== "succeeded") open(job);
};
setupForm($("#world-form"), (job) => {
  jobs.update(job);
  open(job);
});
for (const button of document.querySelectorAll(".tabs button")) button.addEventListener("click", () => showView(button.dataset.view));
for (const radio of document.querySelectorAll("input[name=nav]")) radio.addEventListener("change", (e) => world.setMode(e.target.value));
$("#relayer").addEventListener("click", async () => {
  const errors = $("#box-error");
  errors.hidden = true;
  try {
    const job = await api("POST", "/v1/worlds", {
      source_world_id: current.id,
      scene: current.request.scene,
      steps: current.request.steps,
      objects_fg1: picker.objects("fg1"),
      objects_fg2: picker.objects("fg2"),
    });
    jobs.update(job);
    open(job);
  } catch (error) {
    showError(errors, error);
  }
});
jobs.start();
document.body.dataset.ready = "1";
