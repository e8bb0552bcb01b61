"""autoinfer: entrypoint and init toolkit for LLM inference containers."""

import gc

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
