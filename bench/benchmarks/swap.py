"""llama-swap config sync: scanning 100, 1,000 and 10,000 ``.gguf`` files.

- ``swap.discover.discover_models`` (the scan: shards grouped, projectors attached),
  in-process, against ``find DIR -name '*.gguf'`` (the bare walk). Goal for 10,000
  files: under 1 s.
- ``swap.sync_config`` on a config already in sync with the tree (what a periodic sync
  pays), in-process, against the same ``find``.

The files are minimal valid GGUF headers (about 60 bytes), 100 per folder, with a few
split models and ``mmproj`` projectors mixed in, as a real models volume has.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import Context, Curve, bench, time_call, time_process, under

GOAL = under(1.0)


def gguf_header(arch: str = "llama", name: str = "fake") -> bytes:
    """A GGUF v3 file with two string keys and no tensors."""

    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kvs = [("general.architecture", arch), ("general.name", name)]
    body = b"".join(string(k) + struct.pack("<I", 8) + string(v) for k, v in kvs)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + body


def models_tree(root: Path, count: int) -> Path:
    """*count* ``.gguf`` files under *root*, 100 per folder, some split and some projectors."""
    header = gguf_header()
    made = 0
    folder_index = 0
    while made < count:
        folder = root / f"org{folder_index // 10}" / f"repo{folder_index}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(min(100, count - made)):
            if i % 50 == 1:
                name = f"mmproj-model{i - 1}-f16.gguf"
            elif i % 50 in (2, 3):
                name = f"split{i // 50}-0000{i % 50 - 1}-of-00002.gguf"
            else:
                name = f"model{i}-Q4_K_M.gguf"
            (folder / name).write_bytes(header)
            made += 1
        folder_index += 1
    return root


def syncer(config: Path, models_dir: Path) -> Callable[[], Any]:
    """``sync_config`` called with whatever its signature asks for, no restart."""
    from entrypoint.swap import sync_config

    params = inspect.signature(sync_config).parameters
    kwargs: dict[str, Any] = {}
    for key in ("config", "config_path", "path"):
        if key in params:
            kwargs[key] = config
            break
    if "models_dir" in params:
        kwargs["models_dir"] = models_dir
    defaults = (
        ("prune", False),
        ("dry_run", False),
        ("cmd_template", None),
        ("no_restart", True),
        ("restart", False),
        ("container", None),
    )
    for key, value in defaults:
        if key in params:
            kwargs[key] = value
    return lambda: sync_config(**kwargs)


@bench("swap-scan")
def scan(ctx: Context) -> None:
    from entrypoint.swap.discover import discover_models

    counts = [100, 1000, 10000]
    ours_curve: list[float | None] = []
    base_curve: list[float | None] = []
    sync_curve: list[float | None] = []
    sync_error = ""
    for n in counts:
        tree = models_tree(ctx.scratch(f"swap-{n}") / "models", n)
        find = ["find", str(tree), "-name", "*.gguf"]
        row = ctx.compare(
            f"swap-scan-{n}",
            f"`swap.discover.discover_models` over {n:,} .gguf files (in-process)",
            lambda tree=tree: time_call(lambda: discover_models(tree)),  # type: ignore[misc]
            lambda find=find: time_process(find),  # type: ignore[misc]
            baseline_what="`find -name '*.gguf'`",
            rounds=ctx.rounds(full=7, quick=3),
            goal=GOAL if n == 10000 else None,
        )
        assert row.ours is not None and row.baseline is not None
        ctx.rss([row], lambda tree=tree: discover_models(tree))  # type: ignore[misc]
        ours_curve.append(row.ours.median)
        base_curve.append(row.baseline.median)
        sync_curve.append(None)
        if sync_error:
            continue
        try:
            config = tree.parent / "config.yaml"
            config.write_text("# llama-swap config, synced by the benchmark\nmodels: {}\n")
            sync = syncer(config, tree)
            sync()  # the first sync writes every entry (not timed)
        except (ImportError, AttributeError, TypeError) as exc:
            sync_error = f"not available yet: {type(exc).__name__}: {exc}"
            continue
        srow = ctx.compare(
            f"swap-sync-{n}",
            f"`swap.sync_config` with {n:,} .gguf files, config already in sync (in-process)",
            lambda sync=sync: time_call(sync),  # type: ignore[misc]
            lambda find=find: time_process(find),  # type: ignore[misc]
            baseline_what="`find -name '*.gguf'`",
            rounds=ctx.rounds(full=5, quick=2),
            goal=GOAL if n == 10000 else None,
        )
        assert srow.ours is not None
        ctx.rss([srow], sync)
        sync_curve[-1] = srow.ours.median
    if sync_error:
        ctx.skip("swap-sync", "`swap.sync_config` on a synced config", sync_error, goal=GOAL)
    series = {"discover_models": ours_curve, "find": base_curve}
    if any(v is not None for v in sync_curve):
        series["sync_config (in sync)"] = sync_curve
    ctx.curves.append(Curve("swap-scan", "swap sync vs .gguf files", ".gguf files", counts, series))
