"""Run profiles: one name that sizes every notebook (DESIGN.md §2).

A profile changes sizes and sources, never the code path. Notebooks read their defaults from here and
let any knob in their ``parameters`` cell override it.

- ``ci``: the smallest sizes; every notebook in minutes on 2 CPU cores (what `make test` runs).
- ``local``: the default of the main job: the whole offline bundle on one CPU machine, about an hour in all.
- ``full``: real atlases (network) and a GPU; multi-GPU through torchrun.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    max_cells_per_dataset: int | None  # cap on cells loaded from each dataset (None = all)
    use_atlases: bool                  # fetch real atlases over the network (CELLxGENE Census, GEO)


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", max_cells_per_dataset=2_000, use_atlases=False),
    "local": Profile("local", max_cells_per_dataset=None, use_atlases=False),
    "full": Profile("full", max_cells_per_dataset=None, use_atlases=True),
}


def get_profile(name: str) -> Profile:
    """The :class:`Profile` called ``name``; a clear error for an unknown name."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
