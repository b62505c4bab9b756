"""The stable public API: the committed snapshot, complete ``__all__`` lists, and the deprecation helper.

A failure of ``test_the_public_api_matches_the_snapshot`` means that the public
API changed. If the change is deliberate, regenerate the snapshot and add a
CHANGELOG.md entry (see docs/compatibility.rst)::

    python -m tools.api_snapshot --update
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import types
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool() -> types.ModuleType:
    """``tools/api_snapshot.py``, loaded by path (the repository root need not be on sys.path)."""
    spec = importlib.util.spec_from_file_location("_detkit_api_snapshot", ROOT / "tools" / "api_snapshot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


api_snapshot = _tool()


def test_the_public_api_matches_the_snapshot() -> None:
    committed = api_snapshot.SNAPSHOT.read_text(encoding="utf-8")
    diff = api_snapshot.difference(committed, api_snapshot.snapshot())
    assert not diff, (
        "The public API differs from the committed snapshot (tests/api_snapshot.txt):\n\n"
        f"{diff}\n"
        "If this change is deliberate, run\n"
        f"    {api_snapshot.UPDATE_COMMAND}\n"
        "and describe it in CHANGELOG.md (Added / Changed / Deprecated / Removed); removing or "
        "changing a public name needs a deprecation first (docs/compatibility.rst)."
    )


def test_the_snapshot_covers_every_public_module_and_section() -> None:
    text = api_snapshot.snapshot()
    for module in api_snapshot.public_modules():
        assert f"[module {module}]" in text
    for section in ("[hooks]", "[built-in components]", "[configuration keys]", "[command line]"):
        assert section in text
    assert "hook register_backbones(" in text
    assert "key train.epochs: int = 30" in text
    assert "command detkit train" in text
    assert "MISSING" not in text and " at 0x" not in text


@pytest.mark.parametrize("module_name", api_snapshot.public_modules())
def test_all_is_sorted_and_complete(module_name: str) -> None:
    """``__all__`` is sorted, names only what exists, and names every public class and function the module has.

    Every class and function of detkit that users could reach only through this
    module counts: defined here, or in a private module (most are, and are
    re-exported), so the check covers the re-exporting modules too. A name whose
    home is another public module (``detkit.interfaces.Backbone`` used by
    ``detkit.testing``) is that module's to export.
    """
    public = set(api_snapshot.public_modules())
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module_name} has no __all__"
    assert list(exported) == sorted(set(exported)), f"{module_name}.__all__ is not sorted and unique"
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names {name!r}, which does not exist"
    held = [
        name for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and (getattr(value, "__module__", None) or "").split(".")[0] == "detkit"
        and (value.__module__ == module_name or value.__module__ not in public)
        and not hasattr(value, "detkit_impl")  # a plugin's hook implementations are named by the hooks
    ]
    assert held, f"{module_name} holds no class or function of detkit: the check would be vacuous"
    missing = sorted(set(held) - set(exported))
    assert not missing, f"{module_name} holds public {missing} but leaves them out of __all__; export or rename with _"


@pytest.mark.parametrize("module_name", api_snapshot.public_modules())
def test_public_names_report_a_public_module(module_name: str) -> None:
    """A class or function in ``__all__`` reports the public module users import it from, never a private one."""
    module = importlib.import_module(module_name)
    public = set(api_snapshot.public_modules())
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            home = value.__module__
            if home.split(".")[0] != "detkit":
                continue  # re-exported from another library
            assert home in public, f"{module_name}.{name} reports the private module {home}"
            assert name in importlib.import_module(home).__all__, f"{home} does not export {name}"


def test_the_snapshot_tool_reports_a_difference(tmp_path: Path) -> None:
    text = api_snapshot.snapshot()
    changed = text.replace("def fit(", "def fit_renamed(", 1)
    diff = api_snapshot.difference(text, changed)
    assert "-def fit(" in diff and "+def fit_renamed(" in diff
    assert api_snapshot.difference(text, text) == ""


# -- the deprecation helper --------------------------------------------------------------

from detkit._base import _deprecation  # noqa: E402


def _caught(function, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, caught


def test_a_deprecated_function_keeps_working_and_names_its_replacement() -> None:
    @_deprecation.deprecated(since="0.2", replacement="detkit.component_names")
    def registered_names(kind: str) -> list[str]:
        """The registered names."""
        return [kind]

    result, caught = _caught(registered_names, "loss")
    assert result == ["loss"]
    (warning,) = caught
    assert warning.category is DeprecationWarning
    message = str(warning.message)
    assert "registered_names is deprecated since detkit 0.2" in message
    assert "removed in detkit 1.0" in message and "use detkit.component_names instead" in message
    assert warning.filename == __file__  # stacklevel points at the caller
    assert ".. deprecated:: 0.2" in registered_names.__doc__
    assert registered_names.__name__ == "registered_names"


def test_a_deprecated_class_warns_when_instantiated() -> None:
    @_deprecation.deprecated(since="1.3", replacement="detkit.History")
    class OldHistory:
        """Old."""

        def __init__(self, records=()):
            self.records = list(records)

    instance, caught = _caught(OldHistory, [1])
    assert instance.records == [1] and isinstance(instance, OldHistory)
    assert "removed in detkit 2.0; use detkit.History instead" in str(caught[0].message)
    assert caught[0].filename == __file__
    assert ".. deprecated:: 1.3" in OldHistory.__doc__


def test_a_renamed_argument_is_forwarded_with_a_warning() -> None:
    @_deprecation.renamed_argument("thresh", "threshold", since="0.2")
    def keep(scores, threshold=0.5):
        return [s for s in scores if s >= threshold]

    result, caught = _caught(keep, [0.2, 0.7], thresh=0.6)
    assert result == [0.7]
    assert "The 'thresh' argument of" in str(caught[0].message)
    assert "use 'threshold' instead" in str(caught[0].message)
    assert caught[0].filename == __file__
    assert _caught(keep, [0.2, 0.7], threshold=0.1)[1] == []
    with pytest.raises(TypeError, match="both 'thresh'"):
        keep([0.2], thresh=0.1, threshold=0.2)


def test_deprecated_module_attributes() -> None:
    module = types.ModuleType("detkit.example")
    module.__getattr__ = _deprecation.deprecated_attributes(  # type: ignore[method-assign]
        "detkit.example", {"OLD": ("detkit.example.NEW", lambda: 42, "0.2")})
    value, caught = _caught(lambda: module.OLD)
    assert value == 42
    assert "detkit.example.OLD is deprecated since detkit 0.2" in str(caught[0].message)
    assert caught[0].filename == __file__
    with pytest.raises(AttributeError, match="no attribute 'MISSING'"):
        module.MISSING  # noqa: B018


def test_removal_only_in_a_later_major_version() -> None:
    assert _deprecation.removal_version("0.2") == "1.0"
    assert _deprecation.removal_version("1.4.1") == "2.0"
    assert "removed in detkit 3.0" in _deprecation.deprecation_message("x", since="1.4", removal="3.0")
    for bad in ("1.5", "1.0", "2.1", "two"):
        with pytest.raises(ValueError, match="must be a major version"):
            _deprecation.deprecation_message("x", since="1.4", removal=bad)
    with pytest.raises(ValueError, match="must be a version"):
        _deprecation.removal_version("soon")
