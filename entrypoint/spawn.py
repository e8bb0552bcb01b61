"""Starting supervisord (or any command) below our init: a fork of this process, or a prefork.

supervisord runs as a fork of the process that becomes the init, running supervisor's
own ``main``: not ``python -m supervisor.supervisord``, because a second interpreter
start costs more than supervisord's own start-up, and this is the path every boot waits
on. A full boot forks it even earlier (:func:`prefork_supervisord`), so that supervisor's
imports (about 110 ms in the image: xmlrpc, http.client, email, importlib.metadata come
with them) overlap boot's own work: the CLI forks it as soon as it has read a plain
``autoinfer boot`` line, before it imports anything else of ours, and hands the child to
boot. supervisor's imports, not boot's, are then what a warm container start waits for
(bench/README.md, "Timeline").

Why this module is not in ``entrypoint/supervisor/``: importing anything there runs that
package's front door first (its types, msgspec included: about 20 ms in the image), and
the fork must come before. So before it, this module imports only os, signal, sys,
errno, contextlib and collections.abc; fsutil, subprocess and traceback are imported
where they are used, after it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from collections.abc import Callable, Sequence

# typing and pathlib would cost ~15 ms before the fork in the image (typing alone
# imports re): annotations only, or imported where used, after it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from pathlib import Path
    from typing import Any, NoReturn

#: Signals our init forwards to supervisord (see init.py).
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

#: From the event listener to our init: a critical server failed. The init stops everything
#: as for SIGTERM and exits 1 without needing a file: the listener's exit marker (which
#: names the server) may not be writable, in a full or read-only state dir.
CRITICAL_FAILED = signal.SIGRTMIN + 1

#: Every signal our init handles: blocked across a fork, back to the default in the child.
INIT_SIGNALS = (*FORWARDED, CRITICAL_FAILED, signal.SIGCHLD)

#: Starts the child with the environment it gets, returns its pid.
Starter = Callable[[dict[str, str]], int]


def start_command(command: Sequence[str]) -> Starter:
    """Start *command* as a new process (any program; ``--`` on the init's command line)."""

    import subprocess  # not before the prefork (see the module docstring): only `-- CMD` needs it

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
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(INIT_SIGNALS))
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
            from entrypoint.fsutil import write_all  # after the fork (see the module docstring)

            order = encode_order(conf, env)
            fd, self.order_fd = self.order_fd, -1
            try:
                write_all(fd, order)
            except BrokenPipeError:  # it died while importing (its traceback is above)
                raise OSError(
                    errno.EPIPE, "its process (forked at start) ended before boot could give it its config"
                ) from None
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


def encode_order(conf: str | Path, env: dict[str, str]) -> bytes:
    """supervisord's config path and environment, NUL-separated as in ``/proc/PID/environ``.

    Not JSON: the forked process would import json (~3 ms in the image) on the path a
    container start waits for. Neither a path nor a variable holds a NUL, and a
    variable's name holds no ``=``.
    """
    return b"\0".join([os.fsencode(conf), *(os.fsencode(f"{key}={value}") for key, value in env.items())])


def decode_order(data: bytes) -> tuple[str, dict[str, str]]:
    """The inverse of :func:`encode_order`."""
    conf, *variables = (os.fsdecode(part) for part in data.split(b"\0"))
    return conf, dict(variable.split("=", 1) for variable in variables)


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

    def wait_for_order() -> tuple[str, dict[str, str]]:
        from entrypoint import kept_imports

        with kept_imports():  # the slow part, while boot prepares
            from supervisor import supervisord  # noqa: F401

        data = bytearray()
        while chunk := os.read(order_r, 65536):
            data += chunk
        if not data:
            os._exit(0)
        return decode_order(bytes(data))

    _supervisord_child(wait_for_order, signal.pthread_sigmask(signal.SIG_BLOCK, set()))


def _supervisord_child(order: Callable[[], tuple[str | Path, dict[str, str]]], mask: Any) -> NoReturn:
    """The forked child's life: get the config, reset what we changed, run supervisord."""
    code = 1
    try:
        conf, env = order()
        signal.set_wakeup_fd(-1)
        for signum in INIT_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _close_fds_from(3)
        os.environ.clear()
        os.environ.update(env)
        with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
            comm.write("supervisord")  # what ps and top show
        # Deferred: supervisor.* costs ~0.1 s and only the forked child runs it.
        from supervisor import supervisord

        supervisord.main(["-n", "-c", str(conf)])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        import traceback

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
