"""nbval settings for the notebooks.

- stderr (library warnings, progress bars) is not compared.
- A cell whose kernel dies fails at once, naming the notebook and the cell, instead of waiting for
  nbval's cell timeout (pass `--nbval-cell-timeout`, as the Makefile does, for cells that hang).
  nbval 0.11 waits on the kernel's reply with one long blocking read; here the wait polls every
  second and checks that the kernel process is still alive.
"""

import time
from queue import Empty

from nbval.kernel import RunningKernel

POLL_SECONDS = 1.0


class KernelDied(RuntimeError):
    """The notebook's kernel process exited while a cell was running (a crash in native code, or killed)."""


def _await_reply(self, msg_id, timeout=None):
    """RunningKernel.await_reply, but it gives up as soon as the kernel process is gone."""
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    while True:
        wait = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
        if wait <= 0:
            raise Empty  # nbval turns this into "Timeout of N seconds exceeded"
        try:
            msg = self.get_message(stream="shell", timeout=wait)
        except Empty:
            if not self.is_alive():
                code = getattr(getattr(self.km, "provisioner", None), "exit_code", None)
                raise KernelDied(f"the kernel died while running this cell (exit code {code}); "
                                 "the cells after it cannot run") from None
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            if msg["content"]["status"] == "aborted":
                raise RuntimeError("Kernel aborted execution request")
            return


RunningKernel.await_reply = _await_reply


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "application/javascript")
