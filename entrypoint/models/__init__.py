"""Models: references, provisioning with verified digests, the catalog.

The front door for boot and plan, which call only what is exported here:

- :func:`check` (plan): where a ref is and in which state; no network, no hashing, no writes.
- :func:`ensure` (boot, ``models pull``): present, verified and catalogued; ``models pull``
  adds its guards and choices as :class:`PullOptions`.
- :func:`parse_model_ref`: what a user may write, as a :class:`ModelRef`.

The ``models`` verbs, which only the CLI's commands call, are in :mod:`.verbs`; this
module never imports it, so a boot does not load them.

Inside, modules read as the pipeline: ``refs`` (what the user wrote) -> ``catalog`` (what
is known: ``model_registry.json``) -> ``guards`` (quota, disk, fit, offline), ``job`` and
``sources/`` (bringing and verifying the bytes; ``remote`` asks sizes and GGUF headers
before any byte, ``hfcache`` shares bytes with the Hugging Face cache) -> ``status``
(what plan shows) -> ``store``/``verification``/``gc``/``migrate``/``compat``/``license``
(the ``models`` verbs). docs/models.md tells the design.
Heavy third-party code (huggingface_hub, the download pipeline) and the sources
themselves are imported only where a cold provisioning or a hub query needs them, so a
warm boot never loads them.
"""

from __future__ import annotations

from entrypoint.models.guards import PullOptions
from entrypoint.models.job import ProvisionedModel
from entrypoint.models.provisioning import ensure
from entrypoint.models.refs import ModelRef, parse_model_ref
from entrypoint.models.status import ModelStatus, check

__all__ = [
    "ModelRef",
    "ModelStatus",
    "ProvisionedModel",
    "PullOptions",
    "check",
    "ensure",
    "parse_model_ref",
]
