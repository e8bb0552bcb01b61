"""autoinfer: entrypoint and init toolkit for LLM inference containers."""

import gc
import sys

__version__ = "0.1.0"


class kept_imports:  # lower case: used like contextlib's context managers
    """A block of imports run without the cyclic collector, whose objects it then never walks.

    An import keeps almost everything it allocates (modules, classes, functions), so a
    collection during it walks live objects only (~9% of a boot's import time), and the
    first collection after it would walk them all once more (~4 ms, in the boot process
    and in supervisord's alike). :func:`gc.freeze` moves them to the permanent generation,
    as Python's docs advise before a fork: a cycle that an import made and dropped stays
    uncollected, a few KB at most. Used where a boot imports (docs/architecture.md,
    "Laziness"); a plain class, because this package's init runs before supervisord's fork.
    """

    def __enter__(self) -> None:
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        gc.freeze()
        gc.enable()


def import_msgspec_alone() -> None:
    """Import msgspec without typing_extensions: about 8 ms less on every boot, 2 on a command.

    msgspec imports typing_extensions whenever it is installed (huggingface_hub brings it)
    for backports of ``get_type_hints``, ``Required`` and ``NotRequired``, and falls back
    to :mod:`typing`'s own when that import fails; Python 3.11 has all three. Only its
    typed decoding uses them, and we use msgspec for ``Struct`` alone. typing_extensions
    in turn imports inspect (with ast, dis and tokenize): none of it is on a boot's path
    otherwise. A later import of typing_extensions (huggingface_hub's, on a cold
    download) is the usual one.
    """
    if "msgspec" in sys.modules or "typing_extensions" in sys.modules:
        return
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]  # `import` of it raises ImportError
    try:
        import msgspec  # noqa: F401
    finally:
        del sys.modules["typing_extensions"]
