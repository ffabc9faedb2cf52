// Runs controller/core's portable tests (tests/controller/core/test_*.py) under the
// MicroPython WebAssembly port. Prints one JSON object on the last line:
//   {"version": "...", "passed": [names], "failed": [{"name", "error"}]}
// Usage: node tests/micropython/run_core_tests.mjs REPO_ROOT
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const root = process.argv[2] ?? process.cwd();
const dirs = ["controller", "controller/core", "tests", "tests/controller", "tests/controller/core"];
let out = "";
const mp = await loadMicroPython({
  stdout: (line) => { out += line + "\n"; },
  stderr: (line) => { out += line + "\n"; },
});
mp.FS.mkdir("/src");
for (const dir of dirs) {
  mp.FS.mkdir(join("/src", dir));
}
const modules = [];
for (const dir of dirs) {
  const deep = dir === "controller/core" || dir === "tests/controller/core";
  for (const name of readdirSync(join(root, dir))) {
    if (!name.endsWith(".py")) continue;
    if (!deep && name !== "__init__.py") continue; // only the packages on the way down
    mp.FS.writeFile(join("/src", dir, name), readFileSync(join(root, dir, name), "utf8"));
    if (dir === "tests/controller/core" && name.startsWith("test_")) {
      modules.push("tests.controller.core." + name.slice(0, -3));
    }
  }
}
const runner = `
import sys, json
sys.path.insert(0, "/src")
passed = []
failed = []
for modname in ${JSON.stringify(modules)}:
    try:
        mod = __import__(modname, None, None, ["*"])
    except Exception as exc:
        failed.append({"name": modname, "error": "import: %s: %s" % (type(exc).__name__, exc)})
        continue
    for name in sorted(dir(mod)):
        if not name.startswith("test_"):
            continue
        fn = getattr(mod, name)
        full = modname.split(".")[-1] + "::" + name
        try:
            fn()
            passed.append(full)
        except Exception as exc:
            failed.append({"name": full, "error": "%s: %s" % (type(exc).__name__, exc)})
print("RESULT " + json.dumps({"version": sys.version, "passed": passed, "failed": failed}))
`;
try {
  mp.runPython(runner);
} catch (err) {
  console.log(out);
  console.error("MicroPython crashed: " + err);
  process.exit(2);
}
const line = out.split("\n").find((l) => l.startsWith("RESULT "));
if (!line) {
  console.log(out);
  console.error("no RESULT line from MicroPython");
  process.exit(2);
}
console.log(line.slice("RESULT ".length));
