"""The package's layers point one way: a module imports only its own layer or those below.

    spectrogram -> plan -> frames and audio (seeds, audio, generate) -> training -> runtime
    -> sinks and inputs (MIDI, OSC) -> the command line (config, commands, cli)

Lazy imports inside functions count too: a layer that needs one above it at run time is as
tangled as one that imports it at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import streamer

LAYERS = (
    ("streamer", "streamer.errors", "streamer.spectrogram"),
    ("streamer.plan",),
    ("streamer.seeds", "streamer.audio", "streamer.generate"),
    ("streamer.training",),
    ("streamer.runtime",),
    ("streamer.sinks", "streamer.inputs"),
    ("streamer.config", "streamer.commands", "streamer.cli", "streamer.__main__"),
)
PACKAGE = Path(streamer.__file__).parent


def layer_of(module: str) -> int:
    """The layer of a module: that of the longest layer name it is or is inside."""
    matches = [
        (len(name), rank)
        for rank, names in enumerate(LAYERS)
        for name in names
        if module == name or module.startswith(name + ".")
    ]
    return max(matches)[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in modules if m == "streamer" or m.startswith("streamer.")}


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        for imported in imported_modules(path):
            if layer_of(imported) > layer_of(module):
                upward.append(f"{module} imports {imported}")
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_the_inputs_never_import_the_sinks():
    """MIDI and OSC sit beside the WebSocket server: what they share with it (the control
    vocabulary, its checks and error codes) lives below both, in ``streamer.plan.controls``."""
    tangled = [
        f"{module_name(path)} imports {imported}"
        for path in sorted((PACKAGE / "inputs").rglob("*.py"))
        for imported in imported_modules(path)
        if imported == "streamer.sinks" or imported.startswith("streamer.sinks.")
    ]
    assert not tangled, "\n".join(tangled)


def test_the_layer_table_knows_every_package():
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    unknown = [p for p in packages if p != "streamer" and layer_of(p) == 0 and p not in LAYERS[0]]
    assert not unknown, f"packages missing from LAYERS: {unknown}"


def test_the_command_line_parses_without_loading_torch():
    """`streamer --help` and option errors come at once; torch loads only for real work."""
    import subprocess
    import sys

    probe = "import sys, streamer.cli; streamer.cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
