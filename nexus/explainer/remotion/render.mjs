// Render a whole composition to an MP4 with the pinned Remotion and a local chromium.
// Usage: node render.mjs <root .tsx> <output .mp4> <browser executable>
import path from "node:path";
import {bundle} from "@remotion/bundler";
import {renderMedia, selectComposition} from "@remotion/renderer";

const [entryPoint, outputLocation, browserExecutable] = process.argv.slice(2);
const serveUrl = await bundle({entryPoint: path.resolve(entryPoint)});
const composition = await selectComposition({serveUrl, id: "Explainer", browserExecutable, logLevel: "error"});
// renderMedia writes the file only when given outputLocation (given `output` it returns a buffer)
await renderMedia({composition, serveUrl, codec: "h264", outputLocation, browserExecutable, logLevel: "error",
  concurrency: 1});
