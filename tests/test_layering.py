"""The package's layering, read from the source: every jfacemap import (module level or inside a function)
must go down the layers, never up or sideways. A new edge that breaks a rule fails here; so does an
exception below that the code no longer needs (delete it from the list).

Layers, bottom to top (a unit may import units of lower layers only):
  0  io, nets, hmm,          files, networks, state models, and `jfacemap.cluster` (runs one task per video on
     jfacemap.cluster        Dask; the work comes from above as a function): they import nothing else from jfacemap
  1  synth, track, encode,   the stages; they do not import each other (none does today). roi (pupil, blink,
     roi                     running of video rectangles) needs only io; its SVD of ROIs is encode's streamed
                             SVD, which the `roi` command (cli) calls, so roi stays beside encode, not above it
  2  figures, refine, chain, figures draw results; refine is the labelling app over track; `jfacemap.chain` runs
     live                   the stages as one call (video -> keypoints -> encoder -> HMM); live tracks frames as
                            they arrive through track's compiled predictor (imports track, io, nets only); none
                            imports another
  3  cli                     the commands: may import anything; only the console entry imports it
Every unit may also import the top-level leaf modules: the package root (its `__init__` holds constants such
as DEFAULT_TRACKER), `jfacemap.skeleton`, `jfacemap.errors`, `jfacemap.exports` (lazy public names of a
subpackage: they resolve inside that subpackage) and `jfacemap.series` (z-scoring and the train/test split,
shared by hmm and the stages, which have no lower common layer); those import only each other.

Inside cli, a command module imports no other command module: what two commands share lives in the
package stage it belongs to. Allowed: `app` (registers every command), and the CLI helpers below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jfacemap"

LAYERS = [{"io", "nets", "hmm", "jfacemap.cluster"}, {"synth", "track", "encode", "roi"},
          {"figures", "refine", "jfacemap.chain", "live"}, {"cli"}]
LEAF_MODULES = {"jfacemap", "jfacemap.skeleton", "jfacemap.errors", "jfacemap.exports", "jfacemap.series"}
# Modules outside cli that may import it: the console entry (`python -m jfacemap`), if there is one.
CLI_ENTRY_POINTS = {"jfacemap.__main__"}

# Between units: (importing module, imported module) -> why it is allowed for now. None today.
KNOWN_UNIT_EXCEPTIONS: dict[tuple[str, str], str] = {}

# Inside cli: modules any command may import (helpers, not commands).
CLI_HELPERS = {
    "jfacemap.cli.progress": "progress bars on stderr, shared by every long command",
    "jfacemap.cli.report": "the demo's report writer (text + summary.json), a helper of `demo`",
    "jfacemap.cli.cluster": "the --cluster option of track, svd and roi, and the lines a cluster run prints",
}
KNOWN_CLI_EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str) -> str:
    """`jfacemap.a.b.attr` -> the module it lives in (the longest prefix that is a module or package)."""
    parts = name.split(".")
    for n in range(len(parts), 1, -1):
        path = PACKAGE.parent.joinpath(*parts[:n])
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return ".".join(parts[:n])
    return "jfacemap"


def imported_modules(path: Path) -> set[str]:
    """Every jfacemap module `path` imports, anywhere in the file (functions and branches included)."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . / .. (module)
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {_resolve(n) for n in names if n == "jfacemap" or n.startswith("jfacemap.")}
    return found - {this}


def unit(module: str) -> str:
    """The subpackage a module belongs to, or the module itself for the top-level leaf modules."""
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1] / "__init__.py").is_file():
        return parts[1]
    return module


def layer(name: str) -> int:
    return next(i for i, units in enumerate(LAYERS) if name in units)


def all_edges() -> set[tuple[str, str]]:
    return {(module_name(p), target) for p in sorted(PACKAGE.rglob("*.py")) for target in imported_modules(p)}


def unit_violation(source: str, target: str) -> str | None:
    """Why the edge source -> target breaks the layering, or None."""
    a, b = unit(source), unit(target)
    if a == b or b in LEAF_MODULES:
        return None
    if a in LEAF_MODULES:
        return f"the leaf module {a} imports {target}; leaf modules import only each other"
    if b == "cli":
        return None if source in CLI_ENTRY_POINTS else f"{source} imports the CLI ({target})"
    if a not in {u for units in LAYERS for u in units} or b not in {u for units in LAYERS for u in units}:
        return f"{a} -> {b}: add the new subpackage to LAYERS in tests/test_layering.py"
    if layer(b) > layer(a):
        return f"{source} imports {target}: {a} (layer {layer(a)}) may not import {b} (layer {layer(b)}, above)"
    if layer(b) == layer(a):
        return f"{source} imports {target}: {a} and {b} share layer {layer(a)} and may not import each other"
    return None


def test_every_subpackage_and_top_level_module_has_a_layer():
    on_disk = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    on_disk |= {f"jfacemap.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert on_disk - LEAF_MODULES == {u for units in LAYERS for u in units}, "add new units to LAYERS"


def test_imports_go_down_the_layers():
    broken = sorted(f"{why}" for s, t in all_edges()
                    if (why := unit_violation(s, t)) and (s, t) not in KNOWN_UNIT_EXCEPTIONS)
    assert not broken, "imports against the layering:\n" + "\n".join(broken)


def test_cli_commands_do_not_import_each_other():
    broken = sorted(f"{s} imports {t}" for s, t in all_edges()
                    if unit(s) == unit(t) == "cli" and s != "jfacemap.cli.app"
                    and t not in CLI_HELPERS and t != "jfacemap.cli" and (s, t) not in KNOWN_CLI_EXCEPTIONS)
    assert not broken, ("a CLI module imports another (move what they share into its package stage):\n"
                        + "\n".join(broken))


def test_cli_helpers_import_no_command():
    broken = sorted(f"{s} imports {t}" for s, t in all_edges() if s in CLI_HELPERS and unit(t) == "cli")
    assert not broken


@pytest.mark.parametrize("edge", sorted({**KNOWN_UNIT_EXCEPTIONS, **KNOWN_CLI_EXCEPTIONS}))
def test_each_known_exception_is_still_needed(edge):
    assert edge in all_edges(), f"{edge[0]} no longer imports {edge[1]}: remove it from the exceptions"


# ------------------------------------------------------- the checker itself ---


def test_the_checker_sees_function_level_relative_and_attribute_imports(tmp_path, monkeypatch):
    package = tmp_path / "jfacemap"
    for folder in ("io", "track", "cli"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "io" / "video.py").write_text("")
    (package / "track" / "predict.py").write_text("")
    (package / "io" / "reader.py").write_text(
        "from . import video\n"
        "def read():\n"
        "    from jfacemap.track.predict import track_video\n"
        "    import jfacemap.cli\n"
    )
    monkeypatch.setitem(globals(), "PACKAGE", package)
    found = imported_modules(package / "io" / "reader.py")
    assert found == {"jfacemap.io", "jfacemap.io.video", "jfacemap.track.predict", "jfacemap.cli"}
    assert unit_violation("jfacemap.io.reader", "jfacemap.track.predict")  # upward
    assert unit_violation("jfacemap.io.reader", "jfacemap.cli")  # nothing imports the CLI
    assert unit_violation("jfacemap.io.reader", "jfacemap.io.video") is None


def test_sideways_and_upward_edges_are_refused():
    assert "share layer" in unit_violation("jfacemap.track.predict", "jfacemap.encode.pipeline")
    assert "share layer" in unit_violation("jfacemap.hmm.fit", "jfacemap.io.video")
    assert "above" in unit_violation("jfacemap.encode.deep", "jfacemap.figures.encode")
    assert "leaf" in unit_violation("jfacemap.skeleton", "jfacemap.io.keypoints")
    assert unit_violation("jfacemap.refine.session", "jfacemap.track.model_store") is None
    assert unit_violation("jfacemap.cli.track", "jfacemap.track.predict") is None
    assert unit_violation("jfacemap.synth.export", "jfacemap.errors") is None
    assert unit_violation("jfacemap.__main__", "jfacemap.cli.app") is None
