"""Model provisioning: references, downloads that resume, digests, the catalog (SPEC section 4).

The modules read as the pipeline: ``refs`` (what the user wrote) -> ``hub`` (what the
hub says) -> ``provision`` (present and verified, catalogued) -> ``status`` (what plan
shows) -> ``gc``/``verify``/``migrate``/``compat``/``license`` (the ``models`` verbs).

Names are loaded on first use so that ``import entrypoint.models`` costs nothing on the
boot path until a model is really provisioned.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from entrypoint.models.gc import collect_garbage as collect_garbage
    from entrypoint.models.gc import models_in_use as models_in_use
    from entrypoint.models.provision import ProvisionedModel as ProvisionedModel
    from entrypoint.models.provision import provision_model as provision_model
    from entrypoint.models.refs import ModelRef as ModelRef
    from entrypoint.models.refs import parse_model_ref as parse_model_ref
    from entrypoint.models.status import model_status as model_status

_EXPORTS = {
    "ProvisionedModel": "entrypoint.models.provision",
    "provision_model": "entrypoint.models.provision",
    "ModelRef": "entrypoint.models.refs",
    "parse_model_ref": "entrypoint.models.refs",
    "model_status": "entrypoint.models.status",
    "models_in_use": "entrypoint.models.gc",
    "collect_garbage": "entrypoint.models.gc",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'entrypoint.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
