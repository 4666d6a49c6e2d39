// How worlds and files read on the page: titles, status words, sizes, times. One place for wording.
export function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function worldTitle(job, jobs) {
  const request = job.request || {};
  const boxes = (request.objects_fg1 || []).length + (request.objects_fg2 || []).length;
  if (request.source_world_id && boxes) {
    const source = jobs && jobs.get(request.source_world_id);
    if (source) return `Re-layered: ${worldTitle(source, jobs)}`;
    return request.prompt ? `Re-layered: ${clip(request.prompt)}` : "Re-layered world";
  }
  if (request.prompt) return clip(request.prompt);
  if (request.panorama_upload_id) return "Uploaded panorama";
  if (request.image_upload_id) return "World from a photo";
  return "Untitled world";
}

const clip = (text) => (text.length > 80 ? `${text.slice(0, 79)}…` : text);

const STATUS = { queued: "Queued", starting: "Starting", running: "Generating", succeeded: "Ready", failed: "Failed", canceled: "Canceled" };
const STAGE = {
  loading_models: "Loading models", panorama: "Painting the panorama", layers: "Separating layers",
  depth: "Estimating depth", mesh: "Building meshes", export: "Writing files", upload: "Saving files",
};

export const isActive = (job) => ["queued", "starting", "running"].includes(job.status);

export function statusWord(job) {
  if (job.status === "succeeded" && job.request && job.request.stage === "panorama") return "Panorama ready";
  return STATUS[job.status] || job.status;
}

export function stageWord(stage) {
  return STAGE[stage] || (stage ? stage.replace(/_/g, " ") : "");
}

// What a world is doing right now, or how it ended, in one line.
export function statusDetail(job) {
  if (job.status === "queued") return job.queue_position ? `number ${job.queue_position} in the queue` : "waiting for a worker";
  if (isActive(job)) return [stageWord(job.stage), job.message].filter(Boolean).join(" · ") || "starting";
  if (job.status === "succeeded") return `made in ${duration(job)}`;
  // After the status word ("Canceled", "Failed"), so the verb is not said twice.
  const during = job.stage ? `while ${stageWord(job.stage).toLowerCase()}` : "";
  if (job.status === "canceled") return during ? `${during} (${Math.round(job.progress * 100)}%)` : "before it started";
  if (job.status === "failed") return during || "before it started";
  return "";
}

export function duration(job) {
  const start = job.started_at || job.created_at;
  const seconds = Math.max(0, (new Date(job.finished_at || job.updated_at) - new Date(start)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function ago(iso) {
  const seconds = Math.max(0, (Date.now() - new Date(iso)) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export function bytes(size) {
  if (size < 1000) return `${size} B`;
  if (size < 1e6) return `${(size / 1e3).toFixed(size < 1e4 ? 1 : 0)} kB`;
  if (size < 1e9) return `${(size / 1e6).toFixed(size < 1e7 ? 1 : 0)} MB`;
  return `${(size / 1e9).toFixed(1)} GB`;
}
