"""Config parsing at scale: ``config.parse_config`` for 1, 10 and 100 instances, in-process.

Baseline: ``tomllib.loads`` of the same text, so the ratio is the cost of our validation
and merging on top of TOML parsing itself.
"""

from __future__ import annotations

import tomllib

from bench.harness import Context, Curve, bench, time_call


def config_text(instances: int, model: str = "/models/tiny.gguf", ports: list[int] | None = None) -> str:
    """A config in the README's shape ("The config") with *instances* servers."""
    lines = [
        "[master]",
        "enable = true",
        "",
        "[instance.control]",
        'gpu_ids = "none"',
        'restart = "always"',
        "stop_timeout = 5",
        "",
        "[instance.server]",
        'host = "127.0.0.1"',
        "ctx_size = 512",
        "n_gpu_layers = 0",
        "",
    ]
    for i in range(instances):
        lines += [
            f"[instance.s{i}.control]",
            "enabled = true",
            "",
            f"[instance.s{i}.server]",
            f'model = "{model}"',
            f"port = {ports[i] if ports else 18000 + i}",
            'alias = "tiny"',
            "",
        ]
    return "\n".join(lines)


@bench("config-scale")
def config_scale(ctx: Context) -> None:
    from entrypoint.config import parse_config

    sizes = [1, 10, 100]
    ours_curve: list[float | None] = []
    base_curve: list[float | None] = []
    for n in sizes:
        text = config_text(n)
        repeat = max(1, 200 // n)
        row = ctx.compare(
            f"config-parse-{n}",
            f"`config.parse_config` with {n} instance{'s' if n > 1 else ''} (in-process)",
            lambda text=text, repeat=repeat: time_call(lambda: parse_config(text), repeat=repeat),  # type: ignore[misc]
            lambda text=text, repeat=repeat: time_call(lambda: tomllib.loads(text), repeat=repeat),  # type: ignore[misc]
            baseline_what="`tomllib.loads` of the same text",
            rounds=ctx.rounds(full=15, quick=5),
        )
        assert row.ours is not None and row.baseline is not None
        ctx.rss([row], lambda text=text: parse_config(text))  # type: ignore[misc]
        ours_curve.append(row.ours.median)
        base_curve.append(row.baseline.median)
    ctx.curves.append(
        Curve(
            "config-scale",
            "Config parsing vs instances",
            "instances",
            sizes,
            {"parse_config": ours_curve, "tomllib.loads": base_curve},
        )
    )
