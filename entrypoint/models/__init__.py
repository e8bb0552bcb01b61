"""Models: references, provisioning with verified digests, the catalog, and the ``models`` verbs.

The front door. Boot, plan and the CLI call only what is exported here:

- :func:`check` (plan): where a ref is and in which state; no network, no hashing, no writes.
- :func:`ensure` (boot, ``models pull``): present, verified and catalogued; ``models pull``
  adds its guards and choices as :class:`PullOptions`.
- the ``models`` verbs: :func:`list_models`, :func:`model_info`, :func:`verify_store`,
  :func:`set_pinned`, :func:`search_models`, :func:`collect_garbage` (with
  :func:`instances_using`/:func:`models_in_use`), :func:`migrate_store`, :func:`check_compat`,
  :func:`show_license`, :func:`accept_license`.

Inside, modules read as the pipeline: ``refs`` (what the user wrote) -> ``catalog`` (what
is known: ``model_registry.json``) -> ``guards`` (quota, disk, fit, offline), ``job`` and
``sources/`` (bringing and verifying the bytes; ``remote`` asks sizes and GGUF headers
before any byte, ``hfcache`` shares bytes with the Hugging Face cache) -> ``status``
(what plan shows) -> ``store``/``verification``/``gc``/``migrate``/``compat``/``license``
(the ``models`` verbs). docs/models.md tells the design.
Heavy third-party code (huggingface_hub, the download pipeline) is imported only where a
cold provisioning or a hub query needs it, so a warm boot never loads it.
"""

from __future__ import annotations

from entrypoint.models.compat import check_compat
from entrypoint.models.gc import GcReport, collect_garbage, instances_using, models_in_use
from entrypoint.models.guards import PullOptions
from entrypoint.models.hub import RepoSummary
from entrypoint.models.job import ProvisionedModel
from entrypoint.models.license import LicenseStatus, accept_license, show_license
from entrypoint.models.migrate import MigrationReport, migrate_store
from entrypoint.models.provisioning import ensure
from entrypoint.models.refs import ModelRef, parse_model_ref
from entrypoint.models.status import ModelStatus, check
from entrypoint.models.store import ModelSummary, list_models, model_info, resolve_key, search_models, set_pinned
from entrypoint.models.verification import VerifyReport, verify_store

__all__ = [
    "GcReport",
    "LicenseStatus",
    "MigrationReport",
    "ModelRef",
    "ModelStatus",
    "ModelSummary",
    "ProvisionedModel",
    "PullOptions",
    "RepoSummary",
    "VerifyReport",
    "accept_license",
    "check",
    "check_compat",
    "collect_garbage",
    "ensure",
    "instances_using",
    "list_models",
    "migrate_store",
    "model_info",
    "models_in_use",
    "parse_model_ref",
    "resolve_key",
    "search_models",
    "set_pinned",
    "show_license",
    "verify_store",
]
