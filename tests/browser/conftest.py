"""Shared fixtures for the browser tests: a real JupyterLab and Debian's chromium via Playwright.

- ``jupyter_lab`` (session): ``jupyter lab`` on 127.0.0.1, a free port, no token,
  a temporary root dir, and its own config/settings/workspaces dirs so nothing
  from the developer's ~/.jupyter leaks in. Kernels get this checkout on
  PYTHONPATH, and JupyterLab loads the lab extension built in this checkout
  (``jupyter_smstep/labextension``) ahead of any installed copy, so the tests
  exercise the source tree.
- ``browser`` (session): chromium from ``/usr/bin/chromium`` (``apt-get install chromium``;
  Playwright never downloads a browser here).
- ``page`` (function): a fresh Playwright page in its own browser context.
- ``lab`` (function): a :class:`LabPage` helper around ``page`` to write a
  notebook, open it, run it, drive commands and save screenshots to
  ``test-artifacts/``.

The browser tests are marked ``browser`` and skipped when chromium is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
BUILT_LABEXTENSION = REPO / "jupyter_smstep" / "labextension"
CHROMIUM = os.environ.get("SMSTEP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAB_START_TIMEOUT = 120


def pytest_collection_modifyitems(config, items):
    """Skip browser tests, with the reason, where chromium or playwright is missing."""
    reason = None
    if not Path(CHROMIUM).exists():
        reason = f"no chromium at {CHROMIUM}: apt-get install -y chromium"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            reason = "playwright is not installed: pip install playwright"
    if reason:
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLabServer:
    """A running ``jupyter lab``; see :func:`start_jupyter_lab`."""

    def __init__(self, process: subprocess.Popen, port: int, root_dir: Path, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.root_dir = root_dir
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{port}"

    def url(self, path: str = "lab") -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _die_with_parent() -> None:
    """Linux: end the server if the test process dies without stopping it (no orphans in CI)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the server is stopped by the fixture only
        pass


def lab_environment(state_dir: Path) -> dict:
    """Environment for a JupyterLab whose config, settings and workspaces are all temporary."""
    env = dict(os.environ)
    for var, sub in [
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ]:
        path = state_dir / sub
        path.mkdir(parents=True, exist_ok=True)
        env[var] = str(path)
    # No "would you like news?" toast over the screenshots, no update check.
    notification = state_dir / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    env.pop("JUPYTER_PATH", None)
    return env


def start_jupyter_lab(
    root_dir: Path,
    state_dir: Path,
    labextensions_path: list[Path] | None = None,
    extra_labextensions_path: list[Path] | None = None,
    log_name: str = "jupyter-lab",
) -> JupyterLabServer:
    """Start ``jupyter lab`` and wait until it answers; the caller must ``stop()`` it.

    ``labextensions_path`` (non-empty) replaces where JupyterLab looks for
    prebuilt extensions (the benchmark uses it to compare with and without ours);
    ``extra_labextensions_path`` is searched first, ahead of installed ones.
    """
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    env = lab_environment(state_dir)
    args = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--allow-root",
        "--no-browser",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
    ]
    # One flag per item: `jupyter lab` would take a JSON list as a single path.
    for path in labextensions_path or []:
        args.append(f"--LabApp.labextensions_path={path}")
    for path in extra_labextensions_path or []:
        args.append(f"--LabApp.extra_labextensions_path={path}")
    log_path = state_dir / f"{log_name}.log"
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        args, cwd=root_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
    )
    log_file.close()
    server = JupyterLabServer(process, port, root_dir, log_path)
    deadline = time.monotonic() + LAB_START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{server.log()[-4000:]}")
        try:
            server.api("api/status")
            urllib.request.urlopen(server.url("lab"), timeout=10).read()
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(
                    f"jupyter lab did not answer in {LAB_START_TIMEOUT}s:\n{server.log()[-4000:]}"
                ) from None
            time.sleep(0.3)


def source_labextension_dir(tmp: Path) -> Path | None:
    """A labextensions dir holding only this checkout's built extension, or None if not built."""
    if not (BUILT_LABEXTENSION / "package.json").exists():
        return None
    target = tmp / "labextensions"
    target.mkdir(parents=True, exist_ok=True)
    link = target / "jupyter-smstep"
    if not link.exists():
        link.symlink_to(BUILT_LABEXTENSION, target_is_directory=True)
    return target


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory):
    """A JupyterLab for the whole session; tests write their notebooks into ``root_dir``."""
    base = tmp_path_factory.mktemp("jupyter-lab")
    root = base / "root"
    root.mkdir()
    extra = source_labextension_dir(base)
    server = start_jupyter_lab(root, base / "state", extra_labextensions_path=[extra] if extra else None)
    yield server
    server.stop()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(server.log_path, ARTIFACTS / "jupyter-lab.log")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def new_page(browser):
    """A page in a fresh browser context (no shared storage); close it with ``page.context.close()``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    page.console_messages = messages  # type: ignore[attr-defined]
    return page


@pytest.fixture
def page(browser):
    page = new_page(browser)
    yield page
    page.context.close()


@pytest.fixture(scope="session")
def lab_page_factory(browser, jupyter_lab):
    """Make a :class:`LabPage` that outlives one test (for module-scoped fixtures); closed at session end."""
    pages = []

    def make() -> LabPage:
        page = new_page(browser)
        pages.append(page)
        return LabPage(page, jupyter_lab)

    yield make
    for page in pages:
        page.context.close()


class LabPage:
    """Drives one JupyterLab tab: notebooks, commands, kernels, screenshots.

    Uses ``window.jupyterapp`` (``--LabApp.expose_app_in_browser=True``) where
    the UI would only add flakiness (running all cells, waiting for a kernel).
    """

    def __init__(self, page, server: JupyterLabServer) -> None:
        self.page = page
        self.server = server
        self.name: str | None = None  # the notebook opened last

    # JS: the notebook panel opened last, wherever the focus is now.
    PANEL = "[...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === name)"

    def write_notebook(self, name: str, cells: list, kernel: str = "python3") -> Path:
        """Write ``name`` into the lab's root; a cell is a source string or ``(source, tags)``."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
        for cell in cells:
            source, tags = (cell, []) if isinstance(cell, str) else cell
            if source.startswith("#md\n"):
                nb.cells.append(nbformat.v4.new_markdown_cell(source[4:]))
            else:
                code = nbformat.v4.new_code_cell(source)
                if tags:
                    code.metadata["tags"] = list(tags)
                nb.cells.append(code)
        path = self.server.root_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(path))
        return path

    def open(self, name: str) -> None:
        """Open a notebook in a fresh workspace and wait until its kernel is ready."""
        self.name = name
        workspace = f"t{uuid.uuid4().hex[:8]}"
        self.page.goto(self.server.url(f"lab/workspaces/{workspace}/tree/{name}"))
        self.page.wait_for_function(
            """(name) => {
                const app = window.jupyterapp;
                const w = app && app.shell.currentWidget;
                return !!(w && w.context && w.context.path === name && w.sessionContext
                          && w.sessionContext.isReady && w.content.widgets.length > 0
                          && w.sessionContext.session && w.sessionContext.session.kernel
                          && w.sessionContext.session.kernel.status === 'idle');
            }""",
            arg=name,
            timeout=120_000,
        )

    def execute(self, command: str, args: dict | None = None):
        """Run a JupyterLab command and return what it resolves to (JSON-able)."""
        return self.page.evaluate(
            """async ([id, args]) => {
                const result = await window.jupyterapp.commands.execute(id, args);
                try { return JSON.parse(JSON.stringify(result === undefined ? null : result)); }
                catch { return null; }
            }""",
            [command, args or {}],
        )

    def run_all(self, timeout: float = 180_000) -> None:
        """Run every cell of the current notebook and wait until each code cell has run."""
        self.execute("notebook:run-all-cells")
        self.wait_for_kernel_idle(timeout)
        self.page.wait_for_function(
            f"""(name) => {{
                const w = {self.PANEL};
                const cells = w.content.widgets.filter(c => c.model.type === 'code');
                return cells.every(c => c.model.executionCount !== null);
            }}""",
            arg=self.name,
            timeout=timeout,
        )

    def wait_for_kernel_idle(self, timeout: float = 120_000) -> None:
        self.page.wait_for_function(
            f"""(name) => {{
                const w = {self.PANEL};
                const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
                return !!k && k.status === 'idle';
            }}""",
            arg=self.name,
            timeout=timeout,
        )

    def cell_outputs_text(self) -> list[str]:
        """The text of each cell's outputs in the current notebook (for error messages)."""
        return self.page.evaluate(
            f"""(name) => {self.PANEL}.content.widgets.map(c => {{
                const out = c.node.querySelector('.jp-OutputArea');
                return out ? out.innerText : '';
            }})""",
            self.name,
        )

    def screenshot(self, name: str, locator=None) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        (locator or self.page).screenshot(path=str(path))
        return path


@pytest.fixture
def lab(page, jupyter_lab):
    return LabPage(page, jupyter_lab)


@pytest.fixture
def notebook_name(request):
    """A notebook file name unique to the test, so tests never share kernels or files."""
    return f"{request.node.name.replace('[', '_').replace(']', '')}-{uuid.uuid4().hex[:6]}.ipynb"


def pytest_runtest_makereport(item, call):
    """Keep a screenshot of the page (and its console) when a browser test fails."""
    if call.when != "call" or call.excinfo is None:
        return
    page = None
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, LabPage):
            page = value.page
            break
        if hasattr(value, "screenshot") and hasattr(value, "goto"):
            page = value
            break
    if page is None:
        return
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{item.name}.png"))
        (ARTIFACTS / f"FAILED-{item.name}.console.txt").write_text("\n".join(getattr(page, "console_messages", [])))
    except Exception:  # noqa: BLE001 - a failed screenshot must not hide the test's own failure
        pass
