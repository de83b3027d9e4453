"""What a model file says a network is: :class:`ArchSpec`, and the families that build it.

An :class:`ArchSpec` is the complete, JSON-serialisable description a model file
stores.  Each architecture family registers its builder here with
:func:`register_family` when its module is imported (as timm's ``@register_model``
does); ``models.registry`` imports every family module, so anything that builds or
loads a network through the registry finds them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ArchitectureError, ModelFileError
from .heads import HeadSpec


@dataclass(frozen=True)
class ArchSpec:
    """What to build: family, name (timm model name for ``timm``), head, options."""

    family: str
    name: str
    head: HeadSpec = field(default_factory=HeadSpec)
    options: tuple[tuple[str, Any], ...] = ()
    members: tuple[ArchSpec, ...] = ()
    vote: str = "soft"

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "name": self.name,
            "head": self.head.to_dict(),
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options},
            "members": [m.to_dict() for m in self.members],
            "vote": self.vote,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchSpec:
        try:
            family = str(d["family"])
            if family not in FAMILIES:
                raise ModelFileError(
                    f"the model file names an unknown architecture family {family!r}",
                    "it was written by a newer or foreign program; update napari-cellclass",
                )
            opts = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(d.get("options", {})).items()}
            return cls(
                family=family,
                name=str(d["name"]),
                head=HeadSpec.from_dict(d.get("head", {})),
                options=tuple(sorted(FAMILIES[family].check_options(opts).items())),
                members=tuple(cls.from_dict(m) for m in d.get("members", [])),
                vote=str(d.get("vote", "soft")),
            )
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, ArchitectureError) as err:
            raise ModelFileError(f"the architecture description in the model file is invalid ({err})") from err

    def canonical(self) -> ArchSpec:
        """The same spec with every family option spelled out (how model files store it)."""
        family = FAMILIES.get(self.family)
        if family is None:
            raise ArchitectureError(f"unknown architecture family {self.family!r}")
        opts = tuple(sorted(family.check_options(dict(self.options)).items()))
        return ArchSpec(self.family, self.name, self.head, opts, tuple(m.canonical() for m in self.members), self.vote)

    def describe(self) -> str:
        if self.family == "ensemble":
            return f"ensemble ({self.vote} vote) of " + ", ".join(m.describe() for m in self.members)
        head = self.head
        extra = f", hidden {list(head.hidden)}" if head.hidden else ""
        return f"{self.name} [{self.family}] ({head.pool} pool{extra})"


@dataclass(frozen=True)
class Family:
    """How to build one kind of network from typed options."""

    build: Callable[[ArchSpec, int, int], nn.Module]  # (spec, in_chans, num_outputs)
    defaults: dict[str, Any] = field(default_factory=dict)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ArchitectureError(
                f"unknown option(s) {sorted(unknown)}", f"known options: {sorted(self.defaults) or 'none'}"
            )
        return {**self.defaults, **options}


#: family name -> how to build it; filled by the family modules as they are imported
FAMILIES: dict[str, Family] = {}


def register_family(name: str, defaults: dict[str, Any] | None = None) -> Callable[[Callable], Callable]:
    """Decorator: ``@register_family("timm", {"cam_layer": ""})`` on a ``(spec, in_chans, num_outputs)`` builder."""

    def add(build: Callable[[ArchSpec, int, int], nn.Module]) -> Callable[[ArchSpec, int, int], nn.Module]:
        FAMILIES[name] = Family(build, dict(defaults or {}))
        return build

    return add


def with_head(spec: ArchSpec, head: HeadSpec) -> ArchSpec:
    return ArchSpec(spec.family, spec.name, head, spec.options, spec.members, spec.vote)


def ensemble_spec(members: Sequence[ArchSpec], vote: str = "soft") -> ArchSpec:
    return ArchSpec("ensemble", "ensemble", HeadSpec(), (), tuple(members), vote)

