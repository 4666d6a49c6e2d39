// The worldgen HTTP API: one error shape {"error": {code, message, details}} for every failure.
export class ApiError extends Error {
  constructor(status, error) {
    super(error.message);
    this.status = status;
    this.code = error.code;
    this.fields = (error.details && error.details.fields) || [];
  }
  describe() {
    const fields = this.fields.map((f) => `• ${f.field || "request"}: ${f.message}`).join("\n");
    return fields ? `${this.message}\n${fields}` : this.message;
  }
}

async function parse(response) {
  if (response.status === 401) await askForKey();
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (!response.ok) throw new ApiError(response.status, body.error || { code: "http_error", message: text });
  return body;
}

// A server off loopback needs an API key. It is asked for once and kept by the browser as an
// HttpOnly cookie (POST /v1/session), which also covers the event streams, images and 3D models
// the page loads without headers; then the page starts again with it.
let asking = null;
async function askForKey() {
  if (asking) return asking;
  asking = (async () => {
    for (;;) {
      const key = window.prompt("This worldgen server needs an API key (worldgen keys create NAME):");
      if (!key) return;
      const response = await fetch("/v1/session", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key }),
      });
      if (response.ok) {
        window.location.reload();
        return new Promise(() => {});
      }
    }
  })();
  return asking;
}

export async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  return parse(await fetch(path, options));
}

// What the server serves with (GET /v1/info): whether its models are the tiny test twins, and
// the defaults a request gets. Older servers without it: null.
export async function serverInfo() {
  try {
    return await api("GET", "/v1/info");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export async function upload(file, kind) {
  const form = new FormData();
  form.append("file", file);
  if (kind) form.append("kind", kind);
  return parse(await fetch("/v1/uploads", { method: "POST", body: form }));
}
