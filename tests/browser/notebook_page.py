"""Drive one notebook in a browser through Playwright: open it, run all cells, read its outputs and widgets.

Two frontends, one interface: JupyterLab 4 (run with `expose_app_in_browser`, so the page holds
`window.jupyterapp`) and the classic Notebook 6.5 (`window.Jupyter`). The helpers read the
kernel status and the cells' outputs from the frontend's notebook model rather than from
pixels. Every wait has a timeout, so a broken notebook fails the test instead of hanging it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

KERNEL_START_MS = 60_000
RUN_ALL_MS = 120_000
REDRAW_MS = 30_000

# Text a frontend shows where it cannot render a widget view (e.g. a kernel/frontend version mismatch).
WIDGET_FAILURES = ("Error displaying widget", "Failed to load model class", "Could not create a view",
                   "javascript error", "Error rendering output")


@dataclass(frozen=True)
class Frontend:
    """JavaScript snippets (functions of no argument unless said) that read one frontend's state."""

    name: str
    ready: str  # (path) => true once that notebook is shown, its kernel is connected and widgets can render
    panel_selector: str  # () => a CSS selector for the notebook's own area
    status: str  # () => "idle" / "busy" / ... the kernel status
    run_all: str  # () => starts Run All Cells
    run_done: str  # () => true when Run All finished (every cell ran, or it stopped at an error)
    verdict: str  # () => "true" if every cell ran
    outputs: str  # () => one list of nbformat outputs per cell


_LAB_PANEL = "window.jupyterapp.shell.currentWidget"
LAB = Frontend(
    name="jupyterlab",
    ready="""(path) => { const app = window.jupyterapp; const p = app && app.shell.currentWidget;
        return !!(p && p.context && p.context.path === path && p.sessionContext && p.sessionContext.session
                  && p.sessionContext.session.kernel); }""",
    panel_selector=f"() => '#' + {_LAB_PANEL}.id",
    status=f"() => {_LAB_PANEL}.sessionContext.session.kernel.status",
    # window.__qlearnRunAll stays 'running' until JupyterLab's command settles.
    run_all="""() => { window.__qlearnRunAll = "running";
        window.jupyterapp.commands.execute("notebook:run-all-cells")
            .then(ok => { window.__qlearnRunAll = String(ok); })
            .catch(err => { window.__qlearnRunAll = "failed: " + err; }); }""",
    run_done="() => window.__qlearnRunAll !== 'running'",
    verdict="() => window.__qlearnRunAll",
    outputs=f"""() => {{ const cells = {_LAB_PANEL}.content.model.cells, all = [];
        for (let i = 0; i < cells.length; i++) all.push(cells.get(i).toJSON().outputs || []);
        return all; }}""",
)

_CLASSIC_CODE = "Jupyter.notebook.get_cells().filter(c => c.cell_type === 'code')"
CLASSIC = Frontend(
    name="classic",
    # widgetsnbextension attaches its manager to the kernel once its nbextension has loaded, which can come after
    # the kernel connects. A widget displayed before that is rendered as text/plain for good, so wait for it.
    ready="""(path) => !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.notebook_path === path
        && Jupyter.notebook.kernel && Jupyter.notebook.kernel.is_connected()
        && Jupyter.notebook.kernel.widget_manager !== undefined)""",
    panel_selector="() => '#notebook-container'",
    status="""() => { const icon = document.querySelector('#kernel_indicator_icon');
        return icon && icon.classList.contains('kernel_idle_icon') ? 'idle' : (icon ? icon.className : null); }""",
    run_all="() => { Jupyter.notebook.execute_all_cells(); }",
    run_done=f"""() => {{ const cells = {_CLASSIC_CODE};
        return cells.some(c => c.output_area.outputs.some(o => o.output_type === 'error'))
            || cells.every(c => typeof c.input_prompt_number === 'number'); }}""",
    verdict=f"() => String({_CLASSIC_CODE}.every(c => typeof c.input_prompt_number === 'number'))",
    outputs="() => Jupyter.notebook.get_cells().map(c => c.cell_type === 'code' ? c.output_area.outputs : [])",
)


class NotebookPage:
    """A Playwright `page` showing notebook `name` of a running server, through `frontend` (LAB or CLASSIC)."""

    def __init__(self, page, server, name: str, frontend: Frontend = LAB):
        self.page, self.server, self.name, self.frontend = page, server, name, frontend
        self.panel = None  # the notebook's own area (a locator), once open()
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.console.append(f"uncaught: {exc}"))

    def open(self) -> None:
        if self.frontend is LAB:
            # A workspace of its own, so JupyterLab restores no tab an earlier test left open.
            url = f"{self.server.url}/lab/workspaces/qlearn-test-{uuid.uuid4().hex[:8]}/tree/{self.name}"
        else:
            url = f"{self.server.url}/notebooks/{self.name}"
        self.page.goto(url, wait_until="domcontentloaded")
        self.page.wait_for_function(self.frontend.ready, arg=self.name, timeout=KERNEL_START_MS)
        self.panel = self.page.locator(self.page.evaluate(self.frontend.panel_selector))
        self.wait_idle(KERNEL_START_MS)

    def kernel_status(self):
        try:
            return self.page.evaluate(self.frontend.status)
        except Exception as exc:  # only used in failure messages
            return f"unknown ({exc})"

    def wait_idle(self, timeout_ms: int) -> None:
        self.page.wait_for_function(f"() => ({self.frontend.status})() === 'idle'", timeout=timeout_ms)

    def run_all(self) -> str:
        """Run every cell; wait until the run finished and the kernel is idle. 'true' if every cell ran."""
        self.page.evaluate(self.frontend.run_all)
        self.page.wait_for_function(self.frontend.run_done, timeout=RUN_ALL_MS)
        self.wait_idle(RUN_ALL_MS)
        return self.page.evaluate(self.frontend.verdict)

    def outputs(self) -> list[list[dict]]:
        return self.page.evaluate(self.frontend.outputs)

    def stdout(self, index: int) -> str:
        """The text cell `index` printed (its stream outputs)."""
        return "".join("".join(o["text"]) if isinstance(o["text"], list) else o["text"]
                       for o in self.outputs()[index] if o.get("output_type") == "stream")

    def errors(self) -> list[dict]:
        return [{"cell": i, "ename": o.get("ename"), "evalue": o.get("evalue")}
                for i, outs in enumerate(self.outputs()) for o in outs if o.get("output_type") == "error"]

    def widget_failures(self) -> list[str]:
        text = self.panel.inner_text(timeout=REDRAW_MS)
        return [line for line in text.splitlines() if any(f in line for f in WIDGET_FAILURES)]

    def explain(self) -> str:
        """What to print when an assertion fails: kernel status, errors, console errors, the server log."""
        try:
            errors = self.errors()
        except Exception as exc:
            errors = f"unknown ({exc})"
        return (f"frontend: {self.frontend.name}, kernel: {self.kernel_status()}\nerrors: {errors}\n"
                f"console errors: {[c[:300] for c in self.console[-5:]]}\n"
                f"server log tail:\n{self.server.log_tail(2000)}")
