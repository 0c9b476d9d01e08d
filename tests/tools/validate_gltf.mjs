// The Khronos glTF validator over GLB/glTF files: one compact JSON report per line, in argument order.
//
//   node tests/tools/validate_gltf.mjs scene.glb [more.glb ...]
//
// Exit status: 0 when no report has errors, 1 when one has, 2 when a file cannot be read or is
// not glTF at all (the validator gives no report then, only a message).
// External resources are refused (the worlds layer writes self-contained GLBs), and the
// report carries no timestamp, so the same file always gives the same output.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import validator from "gltf-validator";

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error("usage: node tests/tools/validate_gltf.mjs FILE.glb [FILE.glb ...]");
  process.exit(2);
}
let errors = 0;
for (const path of paths) {
  let bytes;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (error) {
    console.error(`${path}: ${error.message}`);
    process.exit(2);
  }
  let report;
  try {
    report = await validator.validateBytes(bytes, {
      uri: basename(path),
      maxIssues: 0,
      writeTimestamp: false,
      externalResourceFunction: (uri) => Promise.reject(new Error(`external resource ${uri}: GLBs here are self-contained`)),
    });
  } catch (error) {
    console.error(`${path}: ${error.message ?? error}`);
    process.exit(2);
  }
  errors += report.issues.numErrors;
  console.log(JSON.stringify(report));
}
process.exit(errors > 0 ? 1 : 0);
