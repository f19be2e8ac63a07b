"""What the tests do to a private server process of their own (privateredis,
privatemariadb): kill it, pause it, let it go on."""

from __future__ import annotations

import signal
import subprocess


class ChildServer:
    """Signals for ``self.process``, a server a test started (None: not running)."""

    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL (after SIGCONT, so a paused server dies at once)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
