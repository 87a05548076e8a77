"""Does the lab extension slow JupyterLab down? Time to notebook-ready with and without it, in one run.

Two JupyterLab servers run side by side on 127.0.0.1, identical but for one
thing: where they look for prebuilt extensions. Each gets a temporary
labextensions dir with links to every installed prebuilt extension
(ipywidgets, pygments, ...) except jupyter-smstep; the "with" server's dir also
links this checkout's build (``jupyter_smstep/labextension``). Both use
``--LabApp.labextensions_path`` to see only their dir.

Why not ``jupyter labextension disable``: it edits the environment's config
for everyone, and a disabled prebuilt extension's code is still downloaded
(only its plugins are skipped), so it would understate the cost. Leaving the
extension off the path measures exactly "installed" against "not installed"
and touches nothing outside temporary dirs.

Each load opens ``bench.ipynb`` (a few ``%%step`` cells, the shape of a real
notebook) in a fresh browser context and workspace; the loads alternate
between the servers so that drift (caches, CPU heat) hits both alike, and the
notebook's kernel is shut down after each load so that every load starts one.
Measured in the page from navigation start:

- rendered: the notebook's cells and editors are on screen;
- ready: its kernel is idle, i.e. the notebook can run cells.

Prints the medians and the ratios with/without. Run::

    python bench/bench_labextension.py [--loads 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load_browser_helpers():
    """The JupyterLab/chromium helpers of tests/browser/conftest.py (not a package, so by path)."""
    spec = importlib.util.spec_from_file_location("smstep_browser_helpers", REPO / "tests" / "browser" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _load_browser_helpers()

NOTEBOOK_CELLS = [
    "%load_ext jupyter_smstep",
    "SPLIT = 0.8\n\ndef split(rows, frac):\n    n = int(len(rows) * frac)\n    return rows[:n], rows[n:]",
    "%%step load\nrows = [[i, i * 2.0] for i in range(100)]",
    "%%step preprocess\ntrain, test = split(rows, SPLIT)",
    "%%step train\nmodel = sum(r[1] for r in train) / len(train)",
    "%%step evaluate\nscore = sum(abs(r[1] - model) for r in test)",
]

# Per load: (bytes, ms) of each file fetched from /lab/extensions/jupyter-smstep/.
OWN_FILES: list[list[tuple[float, float]]] = []

# Polls in the page and stamps the two moments (ms since navigation start).
PROBE = """
(() => {
  const t = setInterval(() => {
    const app = window.jupyterapp;
    const w = app && app.shell && app.shell.currentWidget;
    if (!window.__rendered && document.querySelector('.jp-NotebookPanel .jp-Cell .cm-content')) {
      window.__rendered = performance.now();
    }
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    if (window.__rendered && w && w.sessionContext.isReady && k && k.status === 'idle') {
      window.__ready = performance.now();
      clearInterval(t);
    }
  }, 5);
})();
"""


def installed_labextensions() -> dict[str, Path]:
    """Every prebuilt extension JupyterLab would load, by name (first on the path wins, as in JupyterLab)."""
    from jupyter_core.paths import jupyter_path

    found: dict[str, Path] = {}
    for base in map(Path, jupyter_path("labextensions")):
        if not base.is_dir():
            continue
        for package in sorted(base.glob("**/package.json")):
            if "node_modules" in package.parts or "static" in package.parts:
                continue
            try:
                name = json.loads(package.read_text())["name"]
            except (ValueError, KeyError):
                continue
            found.setdefault(name, package.parent)
    return found


def link_farm(target: Path, extensions: dict[str, Path]) -> Path:
    for name, path in extensions.items():
        link = target / name  # scoped names (@jupyter-widgets/...) become subdirs, as on disk
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path, target_is_directory=True)
    return target


def load_once(browser, server, name: str, workspace: str, expect_extension: bool) -> tuple[float, float]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.add_init_script(PROBE)
        page.goto(server.url(f"lab/workspaces/{workspace}/tree/{name}"))
        page.wait_for_function("() => window.__ready", timeout=120_000, polling=50)
        rendered, ready = page.evaluate("() => [window.__rendered, window.__ready]")
        ours = page.evaluate(
            """() => performance.getEntriesByType('resource')
                 .filter(e => e.name.includes('/lab/extensions/jupyter-smstep/'))
                 .map(e => [e.encodedBodySize || e.decodedBodySize || 0, e.duration])"""
        )
        OWN_FILES.append(ours)
        has_extension = page.locator(".jp-smstep-toolbar-button").count() > 0
        if has_extension != expect_extension:
            raise RuntimeError(f"{workspace}: the extension is {'' if has_extension else 'not '}loaded")
        # the next load must start its own kernel
        page.evaluate("() => window.jupyterapp.serviceManager.sessions.shutdownAll()")
        return rendered, ready
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=7, help="measured loads per variant (after one warm-up each)")
    args = parser.parse_args(argv)

    if not (helpers.BUILT_LABEXTENSION / "package.json").exists():
        print("build the extension first: (cd labextension && npm ci && npm run build:prod)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="smstep-bench-"))
    servers = {}
    try:
        others = {n: p for n, p in installed_labextensions().items() if n != "jupyter-smstep"}
        paths = {
            "without": link_farm(tmp / "ext-without", others),
            "with": link_farm(tmp / "ext-with", {**others, "jupyter-smstep": helpers.BUILT_LABEXTENSION}),
        }
        root = tmp / "root"
        root.mkdir()
        import nbformat

        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(root / "bench.ipynb"))
        for variant, path in paths.items():
            servers[variant] = helpers.start_jupyter_lab(
                root, tmp / f"state-{variant}", labextensions_path=[path], log_name=variant
            )
        print(f"prebuilt extensions besides ours: {', '.join(sorted(others)) or 'none'}")

        from playwright.sync_api import sync_playwright

        results: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=helpers.CHROMIUM, args=helpers.CHROMIUM_ARGS)
            order = ["without", "with"]
            for i in range(args.loads + 1):
                for variant in order if i % 2 == 0 else reversed(order):
                    t = load_once(browser, servers[variant], "bench.ipynb", f"{variant}{i}", variant == "with")
                    if i > 0:  # the first round warms caches and the kernel spec
                        results[variant].append(t)
                    print(f"  load {i} {variant:>7}: rendered {t[0]:7.0f} ms, ready {t[1]:7.0f} ms", flush=True)
            browser.close()

        med = {
            v: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)) for v, rs in results.items()
        }
        print()
        print(f"median over {args.loads} loads   without      with   ratio")
        for k, label in enumerate(("notebook rendered", "kernel ready")):
            ratio = med["with"][k] / med["without"][k]
            print(f"{label:<24} {med['without'][k]:7.0f} ms {med['with'][k]:7.0f} ms   {ratio:.3f}")
        own = [files for files in OWN_FILES if files]
        if own:
            sizes = statistics.median(sum(b for b, _ in files) for files in own)
            fetch = statistics.median(sum(d for _, d in files) for files in own)
            print(
                f"our files per load: {len(own[-1])} files, {sizes / 1024:.1f} KiB, {fetch:.0f} ms of fetching (median)"
            )
        print(f"RATIO (notebook ready, with/without): {med['with'][1] / med['without'][1]:.3f}")
        return 0
    finally:
        for server in servers.values():
            server.stop()
        time.sleep(0.5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
