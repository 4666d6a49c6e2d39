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
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (!response.ok) throw new ApiError(response.status, body.error || { code: "http_error", message: text });
  return body;
}

export async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  return parse(await fetch(path, options));
}

export async function upload(file, kind) {
  const form = new FormData();
  form.append("file", file);
  if (kind) form.append("kind", kind);
  return parse(await fetch("/v1/uploads", { method: "POST", body: form }));
}
