"""The shape of the code base: small modules, no private names across modules, and the
rasterizer independent of the applications built on it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lasr", "preprocess")
KERNELS = {"lasr/render/raster.py", "lasr/render/_raster_cpu.py"}  # the rasterizer's kernels may be longer
APPS = ("lasr.optimize", "lasr.videos", "lasr.evaluate", "lasr.view", "lasr.fit", "lasr.io", "lasr.examples",
        "preprocess")


def _modules():
    for top in PACKAGES:
        for p in sorted((ROOT / top).rglob("*.py")):
            yield p.relative_to(ROOT).as_posix(), ast.parse(p.read_text())


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.removesuffix(".py").replace("/", ".").split(".")
    base = base[: len(base) - node.level]
    return ".".join(base + ([node.module] if node.module else []))


def test_modules_are_small():
    long = {m: len((ROOT / m).read_text().splitlines()) for m, _ in _modules()}
    assert {m: n for m, n in long.items() if n > 500 and m not in KERNELS} == {}


def test_no_private_name_crosses_a_module():
    found = []
    for module, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    private = a.name.startswith("_") and not a.name.startswith("__")
                    own_submodule = node.level == 1 and node.module is None  # `from . import _kernels`
                    if private and not own_submodule:
                        found.append(f"{module}:{node.lineno} imports {a.name}")
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    found.append(f"{module}:{node.lineno} uses {ast.unparse(node)}")
    assert found == []


def test_the_rasterizer_imports_no_application():
    found = []
    for module, tree in _modules():
        if not module.startswith("lasr/render/"):
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [_absolute(module, node)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found += [f"{module}: {n}" for n in names if any(n == a or n.startswith(a + ".") for a in APPS)]
    assert found == []
    assert not (ROOT / "lasr/render/__main__.py").exists()  # no command inside the rasterizer
