"""What boot would do now, computed without changing anything.

:func:`make_plan` is also boot's first step: it validates every variable, the config
and every model reference before anything is installed or written, so a bad value
stops the container at once with exit 78 and the previous good state untouched.

The plan is typed: one step per thing boot acts on (see docs/architecture.md):

- :class:`~entrypoint.packages.PackageStatus` per package asked for on boot;
- :class:`~entrypoint.packages.PinStatus` per build the config pins (``binary =
  "llama-cpp@<version>[/<variant>]"``): installed, or installed by this boot through the
  release index; a pin that cannot be had stops the plan here, naming its instances;
- :class:`ModelStep` per distinct (model ref, expected digest) the enabled instances use;
- :class:`ServerStep` per enabled instance: its config, the llama-server it runs and
  the model step it waits for;
- :class:`RouterStep` per enabled router (llama-server in router mode): its model steps,
  the preset file it reads and the program it runs.

Boot executes these steps in order and builds each server's final argv with the same
:func:`server_spec` that the plan used, so the plan shows exactly what will run.
"""

from __future__ import annotations

from entrypoint.plan.binaries import choose_binary
from entrypoint.plan.make import make_plan
from entrypoint.plan.specs import router_spec, server_spec, swap_spec
from entrypoint.plan.steps import Binary, ModelStep, Plan, RouterStep, ServerStep

__all__ = [
    "Binary",
    "ModelStep",
    "Plan",
    "RouterStep",
    "ServerStep",
    "choose_binary",
    "make_plan",
    "router_spec",
    "server_spec",
    "swap_spec",
]
