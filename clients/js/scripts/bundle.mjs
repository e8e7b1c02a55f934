// Bundles the package into one ES module: dist/genline-client.js (the `./browser` export),
// and with --web also web/static/genline-client.js, the copy the demo page serves.
import { build } from "esbuild";
import { copyFileSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const { version } = JSON.parse(readFileSync(`${root}/package.json`, "utf8"));
export const BANNER = `// genline-client.js: @genline/client ${version}, bundled from clients/js (do not edit; npm run build:web).`;

export async function bundle(outfile) {
  await build({
    entryPoints: [`${root}/src/index.ts`],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2020",
    banner: { js: BANNER },
    outfile,
    logLevel: "warning",
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await bundle(`${root}/dist/genline-client.js`);
  if (process.argv.includes("--web")) copyFileSync(`${root}/dist/genline-client.js`, `${root}/../../web/static/genline-client.js`);
}
