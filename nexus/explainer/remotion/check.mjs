// Bundle each composition's root and render one still of it with the pinned Remotion and a local
// chromium. Usage: node check.mjs <roots.json> <out dir> <browser executable>
// roots.json: {"<id>": "<path of its root .tsx>"}; writes <out dir>/results.json:
// {"<id>": {"bundle": bool, "render": bool, "png"?: path, "error"?: first line}}.
import fs from "node:fs";
import path from "node:path";
import {bundle} from "@remotion/bundler";
import {openBrowser, renderStill, selectComposition} from "@remotion/renderer";

const [roots, outDir, browserExecutable] = process.argv.slice(2);
const puppeteerInstance = await openBrowser("chrome", {browserExecutable, logLevel: "error"});  // one for all
const results = {};
for (const [id, entryPoint] of Object.entries(JSON.parse(fs.readFileSync(roots, "utf8")))) {
  const result = {bundle: false, render: false};
  try {
    const serveUrl = await bundle({entryPoint: path.resolve(entryPoint), outDir: path.resolve(outDir, `bundle-${id}`)});
    result.bundle = true;
    const composition = await selectComposition({serveUrl, id: "Explainer", browserExecutable, puppeteerInstance,
      logLevel: "error"});
    const png = path.join(outDir, `${id}.png`);
    await renderStill({composition, serveUrl, output: png, frame: Math.floor(composition.durationInFrames / 2),
      browserExecutable, puppeteerInstance, logLevel: "error"});
    Object.assign(result, {render: true, png});
  } catch (error) {
    result.error = String(error?.message ?? error).split("\n")[0].slice(0, 300);
  }
  fs.rmSync(path.join(outDir, `bundle-${id}`), {recursive: true, force: true});
  results[id] = result;
}
await puppeteerInstance.close({silent: true});
fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify(results, null, 1));
