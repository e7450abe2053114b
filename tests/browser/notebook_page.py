"""Drive one notebook in JupyterLab through Playwright: open it, run all cells, read its outputs and widgets.

JupyterLab runs with `expose_app_in_browser`, so the page holds `window.jupyterapp`; the
helpers read the kernel status and the cells' outputs from the notebook model rather than
from pixels. Every wait has a timeout, so a broken notebook fails the test instead of hanging it.
"""

from __future__ import annotations

KERNEL_START_MS = 60_000
RUN_ALL_MS = 120_000
REDRAW_MS = 30_000

_PANEL = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
_KERNEL_STATUS = f"() => {{ const p = {_PANEL}; return p && p.sessionContext && p.sessionContext.session" \
                 " && p.sessionContext.session.kernel ? p.sessionContext.session.kernel.status : null; }"

# [{index, output_type, ename, evalue}] for every error output in the notebook model.
_ERRORS = f"""() => {{
    const errors = [];
    const cells = {_PANEL}.content.model.cells;
    for (let i = 0; i < cells.length; i++) {{
        const cell = cells.get(i).toJSON();
        for (const out of cell.outputs || []) {{
            if (out.output_type === "error") errors.push({{cell: i, ename: out.ename, evalue: out.evalue}});
        }}
    }}
    return errors;
}}"""

# Start 'Run All Cells'; window.__qlearnRunAll says 'running' until JupyterLab reports it finished
# (all cells ran, or it stopped at an error: that is reported by errors(), not by a hang).
_RUN_ALL = """() => {
    window.__qlearnRunAll = "running";
    window.jupyterapp.commands.execute("notebook:run-all-cells")
        .then(ok => { window.__qlearnRunAll = String(ok); })
        .catch(err => { window.__qlearnRunAll = "failed: " + err; });
}"""

# Text a widget manager writes when it cannot render a view (e.g. a kernel/frontend version mismatch).
WIDGET_FAILURES = ("Error displaying widget", "Failed to load model class", "Could not create a view")


class NotebookPage:
    """A Playwright `page` showing `/lab/tree/<name>` of a running LabServer."""

    def __init__(self, page, server, name: str):
        self.page, self.server, self.name = page, server, name
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None)

    def open(self) -> None:
        self.page.goto(f"{self.server.url}/lab/tree/{self.name}", wait_until="domcontentloaded")
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached", timeout=KERNEL_START_MS)
        self.wait_idle(KERNEL_START_MS)

    def kernel_status(self):
        return self.page.evaluate(_KERNEL_STATUS)

    def wait_idle(self, timeout_ms: int) -> None:
        """Wait for the kernel to be idle (the toolbar's indicator and the session both say so)."""
        self.page.wait_for_function(f"() => ({_KERNEL_STATUS})() === 'idle'", timeout=timeout_ms)

    def run_all(self) -> str:
        """Run every cell and wait until the run finished and the kernel is idle; return JupyterLab's verdict."""
        self.page.evaluate(_RUN_ALL)
        self.page.wait_for_function("() => window.__qlearnRunAll !== 'running'", timeout=RUN_ALL_MS)
        self.wait_idle(RUN_ALL_MS)
        return self.page.evaluate("() => window.__qlearnRunAll")

    def errors(self) -> list[dict]:
        return self.page.evaluate(_ERRORS)

    def widget_failures(self) -> list[str]:
        text = self.page.locator(".jp-Notebook").inner_text(timeout=REDRAW_MS)
        return [line for line in text.splitlines() if any(f in line for f in WIDGET_FAILURES)]

    def explain(self) -> str:
        """What to print when an assertion fails: kernel status, errors, console errors, the server log."""
        return (f"kernel: {self.kernel_status()}\nerrors: {self.errors()}\nconsole errors: {self.console[-10:]}\n"
                f"server log tail:\n{self.server.log_tail(2000)}")
