// Validates a .glb/.gltf with the Khronos glTF validator (gltf-validator, pinned in package.json).
//   node web/validate-gltf.mjs FILE
// Prints the full report as JSON on stdout (issues.numErrors, numWarnings, numInfos, numHints and
// every message); exits 1 when the report has errors, 2 when the file cannot be read or parsed.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import validator from "gltf-validator";

const file = process.argv[2];
if (!file) {
  console.error("usage: node web/validate-gltf.mjs FILE");
  process.exit(2);
}
try {
  const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), {
    uri: basename(file),
    maxIssues: 0, // unlimited: the counts cover every issue
    writeTimestamp: false,
  });
  console.log(JSON.stringify(report, null, 2));
  process.exit(report.issues.numErrors > 0 ? 1 : 0);
} catch (error) {
  console.error(`validation failed: ${error}`);
  process.exit(2);
}
