// Builds the page into worldgen/web/static (served by the API at /). Run by scripts/serve and scripts/test.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const out = new URL("../worldgen/web/static/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: ["src/main.js"],
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  sourcemap: false,
  outfile: `${out}app.js`,
  logLevel: "warning",
});
for (const file of ["index.html", "style.css"]) copyFileSync(`public/${file}`, `${out}${file}`);
// The API docs (/docs, /redoc) load Swagger UI and ReDoc from the server, not from a CDN.
mkdirSync(`${out}docs`, { recursive: true });
for (const file of ["swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui-dist/swagger-ui.css",
                    "swagger-ui-dist/favicon-32x32.png", "redoc/bundles/redoc.standalone.js"]) {
  copyFileSync(`node_modules/${file}`, `${out}docs/${file.split("/").pop()}`);
}
console.log(`built ${out}`);
