"""Starting supervisord (or any command) below our init: a fork of this process, or a prefork.

supervisord runs as a fork of the process that becomes the init, running supervisor's
own ``main``: not ``python -m supervisor.supervisord``, because a second interpreter
start costs more than supervisord's own start-up, and this is the path every boot waits
on. A full boot forks it even earlier (:func:`prefork_supervisord`), so that supervisor's
imports overlap boot's own: the CLI does, as soon as it has read a plain ``autoinfer boot``
line and before it imports the boot pipeline, and hands the child to boot.

This module is imported that early, so it imports only the standard library and
fsutil. The package's ``__init__`` (the front door) runs first all the same: in the image
the two cost about 12 ms before the fork, against supervisor's 45 to 50 after it, which
then overlap boot's remaining 50 ms of imports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from entrypoint import fsutil

#: Signals our init forwards to supervisord (see init.py).
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

#: Starts the child with the environment it gets, returns its pid.
Starter = Callable[[dict[str, str]], int]


def start_command(command: Sequence[str]) -> Starter:
    """Start *command* as a new process (any program; ``--`` on the init's command line)."""

    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> int:
        try:
            # restore_signals: the command gets default SIGPIPE/SIGXFSZ, not Python's SIG_IGN.
            child = subprocess.Popen(list(command), restore_signals=True, env=env)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), command[0]) from None
        # Held while the init runs: a Popen that is collected polls its pid, and would reap
        # (and hide from us) a command that has already exited.
        started.append(child)
        return child.pid

    return start


def start_supervisord(conf: Path) -> Starter:
    """Start supervisord as a fork of this process running supervisor's own ``main``.

    In the child: default signal handlers (we block them across the fork, so none is
    lost or run by our handlers in the child), no descriptor of ours beyond
    stdin/out/err (the FIFOs must have no writer but supervisord's programs, and the
    child must not hold our wake-up pipe), the environment we pass, and never a return
    into our caller.
    """

    def start(env: dict[str, str]) -> int:
        _flush_stdio()  # or the child writes our buffered output a second time
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
        pid = os.fork()
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return pid
        _supervisord_child(lambda: (conf, env), mask)

    return start


class Preforked:
    """supervisord's process forked before boot prepares, importing supervisor meanwhile.

    supervisor's modules take 45 to 100 ms to import (xmlrpc, http.client, email, ssl
    come with them); on a machine with a second core that now overlaps boot's own
    imports and work instead of following them. The child waits on a pipe for its config
    and environment (:meth:`starter`); end of file (boot failed, or fell back to an exec)
    ends it quietly, and :meth:`cancel` ends it at once.
    """

    def __init__(self, pid: int, order_fd: int) -> None:
        self.pid = pid
        self.order_fd = order_fd
        self.started = False  # the child has its order: it is supervisord, the init's child

    def starter(self, conf: Path) -> Starter:
        def start(env: dict[str, str]) -> int:
            order = json.dumps({"conf": str(conf), "env": env}).encode()
            fd, self.order_fd = self.order_fd, -1
            try:
                fsutil.write_all(fd, order)
            finally:
                os.close(fd)
            self.started = True
            return self.pid

        return start

    def cancel(self) -> None:
        """End the child unless it has its order (then a no-op); safe to call twice."""
        if self.order_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.order_fd)
            self.order_fd = -1
        if not self.started and self.pid:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.pid = 0


def prefork_supervisord() -> Preforked | None:
    """Fork supervisord's process now (see :class:`Preforked`); None if threads run.

    The caller must hand it to the init (``init.main(..., preforked=)``) or
    :meth:`~Preforked.cancel` it on every other path. Nothing buffered is copied into the
    child (stdout and stderr are flushed first), and the order pipe is close-on-exec,
    so neither a command boot execs nor a server inherits it.
    """
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return None  # a fork copies locks other threads may hold
    order_r, order_w = os.pipe2(os.O_CLOEXEC)
    _flush_stdio()
    pid = os.fork()
    if pid:
        os.close(order_r)
        return Preforked(pid, order_w)
    os.close(order_w)
    _close_fds_from(3, keep=order_r)
    # Ctrl-C while boot prepares reaches the whole process group: boot reports it, we just go.
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    def wait_for_order() -> tuple[Path, dict[str, str]]:
        from supervisor import supervisord  # noqa: F401 - the slow part, while boot prepares

        data = bytearray()
        while chunk := os.read(order_r, 65536):
            data += chunk
        if not data:
            os._exit(0)
        order = json.loads(data)
        return Path(order["conf"]), order["env"]

    _supervisord_child(wait_for_order, signal.pthread_sigmask(signal.SIG_BLOCK, set()))


def _supervisord_child(order: Callable[[], tuple[Path, dict[str, str]]], mask: Any) -> NoReturn:
    """The forked child's life: get the config, reset what we changed, run supervisord."""
    code = 1
    try:
        conf, env = order()
        signal.set_wakeup_fd(-1)
        for signum in (*FORWARDED, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _close_fds_from(3)
        os.environ.clear()
        os.environ.update(env)
        with contextlib.suppress(OSError):
            Path("/proc/self/comm").write_text("supervisord")  # what ps and top show
        # Deferred: supervisor.* costs ~0.1 s and only the forked child runs it.
        from supervisor import supervisord

        supervisord.main(["-n", "-c", str(conf)])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        traceback.print_exc()
    finally:
        _flush_stdio()
        os._exit(code)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _close_fds_from(lowest: int, keep: int = -1) -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(lowest, 1024))
    for fd in fds:
        if fd >= lowest and fd != keep:
            with contextlib.suppress(OSError):
                os.close(fd)
