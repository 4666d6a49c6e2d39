// The submit form: the prompt and Generate first, the rest folded away. Fields left empty are not
// sent, so the server's defaults (smaller with the tiny test models) apply. Errors are shown once,
// under the button, and the fields they name are marked.
import { api, ApiError, upload } from "./api.js";

const numbers = ["seed", "height", "steps", "guidance", "true_cfg_scale", "inpaint_seed"];
const labels = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
const files = { image: "image_upload_id", panorama: "panorama_upload_id", distance: "distance_upload_id" };

export function requestFromForm(form) {
  const data = new FormData(form);
  const body = {
    prompt: data.get("prompt") || "",
    scene: data.get("scene"),
    precision: data.get("precision"),
    step_cache: data.get("step_cache"),
    labels_fg1: labels(data.get("labels_fg1") || ""),
    labels_fg2: labels(data.get("labels_fg2") || ""),
    formats: data.getAll("formats"),
    layered: form.elements.layered.checked,
    depth_compression: form.elements.depth_compression.checked,
  };
  const negative = (data.get("negative_prompt") || "").trim();
  if (negative) body.negative_prompt = negative;
  for (const name of numbers) {
    const value = data.get(name);
    if (value !== null && value !== "") body[name] = Number(value);
  }
  return body;
}

// Placeholders show what an empty field means on this server.
export function showDefaults(form, info) {
  const defaults = (info && info.defaults) || {};
  const tiny = info && info.models && info.models.tiny;
  for (const name of ["height", "steps", "guidance", "inpaint_seed"]) {
    if (defaults[name] === undefined) continue;
    // The value alone fits the narrow field; the tooltip says where it comes from.
    form.elements[name].placeholder = String(defaults[name]);
    form.elements[name].title = `Empty: this server's default, ${defaults[name]}${tiny ? " (small, for the tiny test models)" : ""}`;
  }
}

function fieldElement(form, field) {
  const name = Object.entries(files).find(([, id]) => id === field)?.[0] || field.split(".")[0];
  const element = form.elements[name];
  return element instanceof RadioNodeList ? element[0] : element;
}

export function clearErrors(form, summary) {
  summary.hidden = true;
  summary.textContent = "";
  for (const element of form.querySelectorAll("[aria-invalid]")) element.removeAttribute("aria-invalid");
  for (const element of form.querySelectorAll(".field-error")) element.textContent = "";
}

// The API's message once; each field it names marked, with its own message beside it.
export function showError(form, summary, error) {
  summary.hidden = false;
  if (!(error instanceof ApiError)) {
    summary.textContent = String(error.message || error);
    return;
  }
  const unplaced = [];
  for (const { field, message } of error.fields) {
    const element = field && form ? fieldElement(form, field) : null;
    const slot = form && form.querySelector(`.field-error[data-for="${field.split(".")[0]}"]`);
    if (element && slot) {
      element.setAttribute("aria-invalid", "true");
      slot.textContent = message;
      const folded = element.closest("details");
      if (folded) folded.open = true;
    } else {
      unplaced.push(field ? `${field}: ${message}` : message);
    }
  }
  const marked = error.fields.length - unplaced.length;
  const head = marked ? `Please check the marked field${marked > 1 ? "s" : ""}.` : error.message;
  summary.textContent = [head, ...unplaced].join("\n");
}

export function setupForm(form, onSubmitted) {
  const summary = form.querySelector("#form-error");
  form.addEventListener("input", (event) => {
    const slot = form.querySelector(`.field-error[data-for="${event.target.name}"]`);
    event.target.removeAttribute("aria-invalid");
    if (slot) slot.textContent = "";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, summary);
    const buttons = [...form.querySelectorAll("button[type=submit]")];
    const button = event.submitter || buttons[0];
    const label = button.textContent;
    for (const b of buttons) b.disabled = true;
    button.textContent = "Starting…";
    try {
      const body = requestFromForm(form);
      if (button.name === "stage") body.stage = button.value;
      for (const [name, field] of Object.entries(files)) {
        const file = form.elements[name].files[0];
        if (!file) continue;
        try {
          body[field] = (await upload(file, name)).id;
        } catch (error) {
          if (error instanceof ApiError) error.fields = [{ field, message: error.message }];
          throw error;
        }
      }
      const job = await api("POST", "/v1/worlds", body);
      onSubmitted(job);
    } catch (error) {
      showError(form, summary, error);
    } finally {
      for (const b of buttons) b.disabled = false;
      button.textContent = label;
    }
  });
}
