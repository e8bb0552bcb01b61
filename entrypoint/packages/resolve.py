"""Which installed executable a pin names: the active version's, or a version's by id or number.

A pin is ``<pkg>``, ``<pkg>@<id>`` or ``<pkg>@<version>[/<variant>]``. A version may
be installed as several variants (``b7600`` as ``cpu-x64`` and ``vulkan-x64``); then the
pin's variant decides, else the variant detected on this host (:mod:`.variants`), and
the answer's ``note`` says which and why. Nothing here switches variants silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct

from entrypoint.errors import ArgsError, ConfigError, NotFoundError
from entrypoint.packages.cache import cache_dir
from entrypoint.packages.registry import Registry, Version, active_id, binary_path, intact, main_executable
from entrypoint.packages.releases import read_aliases
from entrypoint.packages.variants import VariantChoice, choose, detect


class ResolvedBinary(Struct, frozen=True):
    """The executable a pin names, with the version it belongs to."""

    path: Path
    version: str | None
    package_id: str | None
    variant: str | None = None
    note: str | None = None  # why this build (several could have been meant)
    args: tuple[str, ...] = ()  # what makes it the server: ("serve",) for the unified llama binary

    # The same build whatever the note says: equality and hash leave it out.
    def _build(self) -> tuple[object, ...]:
        return (self.path, self.version, self.package_id, self.variant, self.args)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResolvedBinary) and self._build() == other._build()

    def __hash__(self) -> int:
        return hash(self._build())

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "version": self.version,
            "package_id": self.package_id,
            "variant": self.variant,
            "note": self.note,
            "args": list(self.args),
        }


class PinRef(Struct, frozen=True):
    """A parsed pin: ``llama-cpp@b7600/vulkan-x64`` -> (llama-cpp, b7600, vulkan-x64)."""

    pkg: str
    ref: str | None  # an id, an id prefix or a version; None: the active version
    variant: str | None  # as written (canonicalised by the lookup)

    @classmethod
    def parse(cls, text: str) -> PinRef:
        pkg, _, rest = text.partition("@")
        ref, _, variant = rest.partition("/")
        if not pkg or (rest and not ref) or ("/" in rest and not variant):
            raise ConfigError(f"{text!r} is not a pin: expected <pkg>, <pkg>@<id> or <pkg>@<version>[/<variant>]")
        return cls(pkg, ref or None, variant or None)

    def __str__(self) -> str:
        return self.pkg + (f"@{self.ref}" if self.ref else "") + (f"/{self.variant}" if self.variant else "")


def find_binary(
    root: Path, pin: str | None, executable: str = "llama-server", *, environ: Mapping[str, str] | None = None
) -> ResolvedBinary | None:
    """The executable a pin names: None/``llama-cpp`` = the active version, ``pkg@<id|version>[/<variant>]``.

    Returns None when nothing is installed and no pin was given; a pin that names
    nothing installed is :class:`NotFoundError` naming it. *environ* feeds variant
    detection when a version is installed as several variants.
    """
    root = root.absolute()
    parsed = PinRef.parse(pin or "llama-cpp")
    reg = Registry.load(root)
    if parsed.ref is None:
        path = binary_path(root, parsed.pkg, executable)
        args = _unified(path)
        if args is not None:
            path = path.with_name(args[0])
        if not path.exists():
            if pin is None:
                return None
            raise NotFoundError(
                f"binary = {pin!r}: {parsed.pkg} is not installed (no {path})",
                hint=f"install it: autoinfer pkg install <archive> --name {parsed.pkg}",
            )
        vid = active_id(root, parsed.pkg)
        version = reg.versions.get(vid) if vid else None
        return ResolvedBinary(
            path=path,
            version=version.version if version else None,
            package_id=vid,
            variant=version.variant if version else None,
            args=args[1] if args else (),
        )
    found, note = pick(root, reg, parsed, environ or {})
    if found is None:
        raise NotFoundError(
            f"binary = {pin!r}: {note}",
            hint=f"see `autoinfer pkg list`; install it with `autoinfer pkg install {parsed.pkg}@{parsed.ref}` "
            "or an archive",
        )
    exe = found.dir(root) / "bin" / executable
    unified = _unified(exe)
    if unified is not None:
        exe = exe.with_name(unified[0])
    return ResolvedBinary(exe, found.version, found.id, found.variant, note, unified[1] if unified else ())


def _unified(server: Path) -> tuple[str, tuple[str, ...]] | None:
    """``(llama, (serve,))`` when *server* (a llama-server path) is missing but the unified binary is there."""
    if server.name != "llama-server" or server.exists():
        return None
    name, args = main_executable("llama-cpp", server.parent)
    return (name, args) if args else None


def pick(root: Path, reg: Registry, pin: PinRef, environ: Mapping[str, str]) -> tuple[Version | None, str]:
    """The intact version *pin* names, and a note saying why (or, when None, what is missing).

    Among the matches of one variant: the active one, else the newest. Among several
    variants: the pin's variant, else the host's detected one (else the active one, else
    the newest), and the note names the candidates.
    """
    assert pin.ref is not None
    matches = [v for v in reg.find(pin.pkg, pin.ref) if intact(root, v)]
    target = read_aliases(cache_dir(root) / "releases").get(pin.ref) if not matches else None
    if target is not None:  # a semver release that pointed at a build (seen in the index before)
        matches = [v for v in reg.find(pin.pkg, target) if intact(root, v)]
    if not matches:
        return None, f"no installed {pin.pkg} has the id or version {pin.ref!r}"
    variants = sorted({v.variant or "-" for v in matches})
    if pin.variant is not None:
        choice = choose(pin.variant, environ)
        matches = [v for v in matches if choice.accepts(v.variant)]
        if not matches:
            return None, f"{pin.pkg} {pin.ref} is installed as {', '.join(variants)}, not as {choice.describe()}"
        if len({v.variant for v in matches}) > 1:
            matches = _by_choice(matches, choice) or matches
        return _active_first(root, matches), f"pinned {pin}"
    if len(variants) == 1:
        return _active_first(root, matches), f"pinned {pin}"
    detected = detect(environ)
    chosen = _by_choice(matches, detected)
    why = f"{pin.pkg} {pin.ref} is installed as {', '.join(variants)}"
    if chosen:
        best = _active_first(root, chosen)
        return best, f"{why}; took {best.variant}, this host's variant ({detected.reason})"
    best = _active_first(root, matches)
    return best, (
        f"{why}; none fits this host ({detected.describe()}: {detected.reason}); took {best.variant or '-'}, "
        "the active or newest one (name a variant: @<version>/<variant>)"
    )


def _by_choice(versions: list[Version], choice: VariantChoice) -> list[Version]:
    best = choice.best([v.variant for v in versions if v.variant])
    return [v for v in versions if best is not None and v.variant == best]


def _active_first(root: Path, versions: list[Version]) -> Version:
    actives = {active_id(root, v.pkg) for v in versions}
    return next((v for v in versions if v.id in actives), versions[0])


def resolve_ref(root: Path, reg: Registry, ref: str, environ: Mapping[str, str], *, exact: bool = False) -> Version:
    """A CLI reference: ``<id>``, an id prefix, ``<version>`` or ``<pkg>@<id|version>[/<variant>]``.

    A version installed several times resolves like a pin (the host's variant, the
    active one) unless *exact* (activation, removal): then it is :class:`ArgsError`
    listing the exact references.
    """
    pkg, _, inner = ref.rpartition("@") if "@" in ref else ("", "", ref)
    ref_part, _, variant = inner.partition("/")
    matches = reg.find(pkg or None, ref_part)
    if variant:
        choice = choose(variant, environ)
        matches = [v for v in matches if choice.accepts(v.variant)]
    if not matches:
        raise NotFoundError(f"no installed package version matches {ref!r}", hint="see `autoinfer pkg list`")
    if len(matches) == 1 or any(v.id == ref_part for v in matches):
        return next((v for v in matches if v.id == ref_part), matches[0])
    pkgs = {v.pkg for v in matches}
    versions = {v.version for v in matches}
    kinds = {v.variant for v in matches}
    listing = ", ".join(f"{v.pkg}@{v.id} ({v.version}, {v.variant or '-'})" for v in matches)
    if len(pkgs) > 1 or len(versions) > 1 or (exact and len(kinds) == 1):
        raise ArgsError(f"{ref!r} names several installed versions: {listing}", hint="give the id (or a longer prefix)")
    if len(kinds) > 1 and exact:
        exacts = ", ".join(sorted({f"{v.pkg}@{v.version}/{v.variant}" for v in matches}))
        raise ArgsError(
            f"{ref!r} names several installed versions (variants): {listing}",
            hint=f"name one: {exacts} (or give the id)",
        )
    if len(kinds) > 1:
        found, _ = pick(root, reg, PinRef(next(iter(pkgs)), ref_part, variant or None), environ)
        assert found is not None
        return found
    return _active_first(root, matches)
