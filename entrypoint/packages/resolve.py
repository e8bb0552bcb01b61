"""Which installed executable a pin names: the active version's, or a version's by id or number."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint.errors import NotFoundError
from entrypoint.packages.registry import Registry, Version, active_id, binary_path, intact


@dataclass(frozen=True)
class ResolvedBinary:
    path: Path
    version: str | None
    package_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "version": self.version, "package_id": self.package_id}


def find_binary(root: Path, pin: str | None, executable: str = "llama-server") -> ResolvedBinary | None:
    """The executable a pin names: None/``llama-cpp`` = the active version, ``pkg@<id|version>``.

    Returns None when nothing is installed and no pin was given; a pin that names
    nothing installed is :class:`NotFoundError` naming it.
    """
    root = root.absolute()
    pkg, _, ref = (pin or "llama-cpp").partition("@")
    reg = Registry.load(root)
    if not ref:
        path = binary_path(root, pkg, executable)
        if not path.exists():
            if pin is None:
                return None
            raise NotFoundError(
                f"binary = {pin!r}: {pkg} is not installed (no {path})",
                hint=f"install it: autoinfer pkg install <archive> --name {pkg}",
            )
        vid = active_id(root, pkg)
        version = reg.versions[vid].version if vid in reg.versions else None
        return ResolvedBinary(path=path, version=version, package_id=vid)
    found = pick(root, reg, pkg, ref)
    if found is None:
        raise NotFoundError(
            f"binary = {pin!r}: no installed {pkg} has the id or version {ref!r}",
            hint=f"see `autoinfer pkg list`; install it with `autoinfer pkg install {pkg}@{ref}` or an archive",
        )
    return ResolvedBinary(path=found.dir(root) / "bin" / executable, version=found.version, package_id=found.id)


def pick(root: Path, reg: Registry, pkg: str | None, ref: str) -> Version | None:
    """The intact version *ref* names: the active one if it matches, else the newest."""
    matches = [v for v in reg.find(pkg, ref) if intact(root, v)]
    if not matches:
        return None
    actives = {active_id(root, v.pkg) for v in matches}
    return next((v for v in matches if v.id in actives), matches[0])
