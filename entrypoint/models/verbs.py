"""The ``autoinfer models`` verbs: what only the CLI's commands call.

- :func:`list_models`, :func:`model_info`, :func:`resolve_key`, :func:`set_pinned`,
  :func:`search_models` (``store``);
- :func:`verify_store` (``verification``);
- :func:`collect_garbage`, with :func:`instances_using`/:func:`models_in_use` (``gc``);
- :func:`migrate_store` (``migrate``), :func:`check_compat` (``compat``);
- :func:`show_license`, :func:`accept_license` (``license``).

``models pull`` is the boot step itself: :func:`entrypoint.models.ensure`. The front door
(``entrypoint.models``) never imports this module, so a boot does not load the verbs.
"""

from __future__ import annotations

from entrypoint.models.compat import check_compat
from entrypoint.models.gc import GcReport, collect_garbage, instances_using, models_in_use
from entrypoint.models.hub import RepoSummary
from entrypoint.models.license import LicenseStatus, accept_license, show_license
from entrypoint.models.migrate import MigrationReport, migrate_store
from entrypoint.models.store import ModelSummary, list_models, model_info, resolve_key, search_models, set_pinned
from entrypoint.models.verification import VerifyReport, verify_store

__all__ = [
    "GcReport",
    "LicenseStatus",
    "MigrationReport",
    "ModelSummary",
    "RepoSummary",
    "VerifyReport",
    "accept_license",
    "check_compat",
    "collect_garbage",
    "instances_using",
    "list_models",
    "migrate_store",
    "model_info",
    "models_in_use",
    "resolve_key",
    "search_models",
    "set_pinned",
    "show_license",
    "verify_store",
]
