// Validate .glb files with the Khronos glTF validator (npm: gltf-validator).
//   cd experiments/gltf_validator && npm install && node validate.mjs FILE.glb [...]
// Prints one JSON object per file: {file, validatorVersion, numErrors, numWarnings, numInfos,
// numHints, messages: [...]}; exits 1 when any file has an error.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");
let failed = false;
for (const file of process.argv.slice(2)) {
  const bytes = new Uint8Array(await readFile(file));
  const report = await validator.validateBytes(bytes, { maxIssues: 100 });
  const issues = report.issues;
  failed ||= issues.numErrors > 0;
  console.log(JSON.stringify({
    file, validatorVersion: report.validatorVersion, numErrors: issues.numErrors,
    numWarnings: issues.numWarnings, numInfos: issues.numInfos, numHints: issues.numHints,
    messages: issues.messages.map((m) => `${["error", "warning", "info", "hint"][m.severity]} ${m.code} ${m.pointer ?? ""}: ${m.message}`),
    info: report.info,
  }));
}
process.exit(failed ? 1 : 0);
