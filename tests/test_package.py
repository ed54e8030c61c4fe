"""Package hygiene: every module imports cleanly on its own, without warnings; the public names of
qnet.physics are pinned; the exception tree has one root and its docstring draws every class."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import qnet.errors
import qnet.physics
from tests.test_layers import modules

NAMES = [m for m, _ in modules()]


def test_every_module_imports_alone_without_warnings() -> None:
    """Each module imports in a fresh interpreter with warnings as errors (a cycle or a
    deprecation fails here)."""
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code, *NAMES],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_importing_qnet_is_light() -> None:
    """`import qnet` loads no numpy, scipy or matplotlib (the CLI starts fast)."""
    code = "import sys, qnet; print(sorted(m for m in ('numpy', 'scipy', 'matplotlib') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_physics_public_names() -> None:
    """The curated public names of qnet.physics; changing them is an API decision."""
    assert sorted(qnet.physics.__all__) == sorted([
        "PROTOCOLS", "BB84DecoyParams", "CVQKDParams", "KeyRatePoint", "MDIQKDParams", "ProtocolModel",
        "RatePoint", "TFQKDParams", "bb84_decoy_rate", "binary_entropy", "channel_loss_db",
        "click_probability", "cv_qkd_rate", "fibre_transmittance", "finite_key_rate", "get_protocol",
        "great_circle_km", "key_rate", "link_transmittance", "live_fraction", "max_distance_km",
        "mdi_qkd_rate", "plob_bound", "single_repeater_bound", "slant_range_km", "tf_qkd_rate",
        "thermal_entropy", "with_afterpulses",
    ])
    for name in qnet.physics.__all__:
        assert hasattr(qnet.physics, name)


ERRORS = [c for _, c in inspect.getmembers(qnet.errors, inspect.isclass)
          if issubclass(c, Exception) and c.__module__ == "qnet.errors"]


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_exception_tree_has_one_root_and_is_drawn(cls: type[Exception]) -> None:
    """Every qnet exception derives from QNetError and appears in errors.py's tree drawing."""
    assert issubclass(cls, qnet.errors.QNetError)
    assert cls.__name__ in (qnet.errors.__doc__ or "")


def test_every_parameter_is_explained() -> None:
    """Each parameter has a meaning in its dataclass's Attributes section (--list-params shows it)."""
    from dataclasses import fields

    from qnet.cli.keyrate import _attribute_docs

    for model in qnet.physics.PROTOCOLS.values():
        meanings = _attribute_docs(model.params_type.__doc__ or "")
        assert {f.name for f in fields(model.params_type)} == set(meanings), model.name
        assert all(len(text) > 5 for text in meanings.values())


def test_every_parameter_has_a_declared_range() -> None:
    """Each field of each protocol's parameters has a LIMITS entry (so it is checked)."""
    from dataclasses import fields

    for model in qnet.physics.PROTOCOLS.values():
        names = {f.name for f in fields(model.params_type)}
        assert names == set(model.params_type.LIMITS), model.name
