"""The one table of profile sizes (gc_lib.core.profiles)."""
import pytest

from gc_lib.core.profiles import NOTEBOOK_SIZES, PROFILES, get_profile


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_SIZES))
def test_every_profile_names_the_same_sizes(notebook):
    entry = NOTEBOOK_SIZES[notebook]
    assert set(entry) == set(PROFILES), f"{notebook}: sizes for {sorted(entry)}, profiles are {sorted(PROFILES)}"
    keys = {name: set(sizes) for name, sizes in entry.items()}
    assert len({frozenset(k) for k in keys.values()}) == 1, f"{notebook}: profiles name different keys: {keys}"


def test_sizes_are_a_copy_and_unknown_names_are_named():
    sizes = get_profile("ci").sizes("03_pretraining")
    sizes["model_overrides"]["d_model"] = -1
    assert get_profile("ci").sizes("03_pretraining")["model_overrides"]["d_model"] != -1
    with pytest.raises(ValueError, match="no sizes for notebook '99_nope'"):
        get_profile("ci").sizes("99_nope")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")


def test_ci_is_never_larger_than_local():
    for notebook, entry in NOTEBOOK_SIZES.items():
        for key, ci_value in entry["ci"].items():
            local = entry["local"][key]
            if isinstance(ci_value, (int, float)) and isinstance(local, (int, float)) and key != "learning_rate":
                assert ci_value <= local, f"{notebook}.{key}: ci {ci_value} > local {local}"
