// The submit form: every request option, uploads first, the API's error message shown as is.
import { api, ApiError, upload } from "./api.js";

const numbers = ["seed", "height", "steps", "guidance", "true_cfg_scale", "inpaint_seed"];
const labels = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

export function requestFromForm(form) {
  const data = new FormData(form);
  const body = {
    prompt: data.get("prompt") || "",
    negative_prompt: data.get("negative_prompt") || "",
    scene: data.get("scene"),
    precision: data.get("precision"),
    step_cache: data.get("step_cache"),
    labels_fg1: labels(data.get("labels_fg1") || ""),
    labels_fg2: labels(data.get("labels_fg2") || ""),
    formats: data.getAll("formats"),
    layered: form.elements.layered.checked,
    depth_compression: form.elements.depth_compression.checked,
  };
  for (const name of numbers) {
    const value = data.get(name);
    if (value !== null && value !== "") body[name] = Number(value);
  }
  return body;
}

export function showError(element, error) {
  element.hidden = false;
  element.textContent = error instanceof ApiError ? error.describe() : String(error.message || error);
}

export function setupForm(form, onSubmitted) {
  const errors = form.querySelector("#form-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.hidden = true;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const body = requestFromForm(form);
      const files = { image: "image", panorama: "panorama", distance: "distance" };
      for (const [field, kind] of Object.entries(files)) {
        const file = form.elements[field].files[0];
        if (file) body[`${kind}_upload_id`] = (await upload(file, kind)).id;
      }
      const job = await api("POST", "/v1/worlds", body);
      onSubmitted(job);
    } catch (error) {
      showError(errors, error);
    } finally {
      button.disabled = false;
    }
  });
}
