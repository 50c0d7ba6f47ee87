// `make web`: the chat page and the Swagger UI files, built from locked npm packages
// into the Python package, where the services serve them, and Mermaid for the docs
// site (all committed, so running the services or building the docs never needs Node).
//
//   web/src/chat.js (+ imports)  -> services/gateway/page/chat.js   (esbuild bundle)
//   swagger-ui-dist's files      -> services/common/swagger_ui/     (copied)
//   mermaid's dist/mermaid.min.js -> docs/assets/javascripts/       (copied: mkdocs.yml
//                                   loads it, so the site draws its diagrams offline)
//
// Only those are built: the page's HTML and CSS, and Swagger UI's page and set-up
// script, are written by hand beside them.
//
// Then web/checksums.sha256 records every input and output (`sha256sum -c` format);
// `make check` fails when a file no longer matches it (checks/web.py), and
// rebuilds to compare byte for byte where npm is installed.
//
// OUT_DIR=<dir> builds into <dir> instead of the repository (that comparison).

import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const WEB = dirname(fileURLToPath(import.meta.url));
const REPO = join(WEB, "..");
const OUT = process.env.OUT_DIR ?? REPO;
const PAGE = "services/gateway/page";
const SWAGGER = "services/common/swagger_ui";
const SWAGGER_DIST = join(WEB, "node_modules/swagger-ui-dist");
const DOCS_JS = "docs/assets/javascripts";
const MERMAID_DIST = join(WEB, "node_modules/mermaid");
// Mermaid's self-contained browser build (it defines the global `mermaid`, which
// mkdocs-material then uses instead of fetching its own copy), and its licence.
const MERMAID_FILES = {
  "dist/mermaid.min.js": "mermaid.min.js",
  LICENSE: "mermaid.min.js.LICENSE.txt",
};
// What /docs loads, and the licence texts that go with it.
const SWAGGER_FILES = [
  "swagger-ui-bundle.js",
  "swagger-ui-bundle.js.LICENSE.txt",
  "swagger-ui.css",
  "favicon-32x32.png",
  "LICENSE",
  "NOTICE",
];

mkdirSync(join(OUT, PAGE), { recursive: true });
mkdirSync(join(OUT, SWAGGER), { recursive: true });
mkdirSync(join(OUT, DOCS_JS), { recursive: true });
await build({
  entryPoints: [join(WEB, "src/chat.js")],
  outfile: join(OUT, PAGE, "chat.js"),
  bundle: true,
  minify: true,
  format: "iife",
  // Browsers of the last few years; the bundle is one classic <script defer>.
  target: ["es2022"],
  legalComments: "eof",
  banner: { js: "/* Built by `make web` from web/src (esbuild): do not edit. */" },
  logLevel: "warning",
});
for (const name of SWAGGER_FILES) {
  copyFileSync(join(SWAGGER_DIST, name), join(OUT, SWAGGER, name));
}
for (const [from, to] of Object.entries(MERMAID_FILES)) {
  copyFileSync(join(MERMAID_DIST, from), join(OUT, DOCS_JS, to));
}

// Inputs first, then outputs; paths from the repository root, sorted.
const files = (dir) =>
  readdirSync(join(REPO, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(REPO, join(entry.parentPath, entry.name)));
const inputs = ["web/package.json", "web/package-lock.json", "web/.npmrc", "web/build.mjs"];
const outputs = [
  `${PAGE}/chat.js`,
  ...SWAGGER_FILES.map((name) => `${SWAGGER}/${name}`),
  ...Object.values(MERMAID_FILES).map((name) => `${DOCS_JS}/${name}`),
];
const sha256 = (path) => createHash("sha256").update(readFileSync(path)).digest("hex");
const lines = [
  ...[...inputs, ...files("web/src")].sort().map((p) => `${sha256(join(REPO, p))}  ${p}`),
  ...outputs.sort().map((p) => `${sha256(join(OUT, p))}  ${p}`),
];
writeFileSync(join(OUT, "web/checksums.sha256"), `${lines.join("\n")}\n`);
