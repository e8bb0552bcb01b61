"""Every benchmark module; importing this package registers them, in this (run) order."""

# ruff: noqa: I001  (the import order is the run order and the order of the README's table)
from bench.benchmarks import (  # noqa: F401  (imported to register)
    startup,
    files,
    downloads,
    config_scale,
    packages,
    models,
    boot,
    swap,
    container,
)
