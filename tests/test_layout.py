"""The package layout is the architecture: which sub-package of `trainer/` may import which, and no cycles.

Imports are read from the source (ast), not by importing, so lazy imports inside functions count too:
a cycle through a function-level import is still a cycle in the design.

    trainer/captions/   caption data                  imports: trainer.atomic only
    trainer/models/     base models and LoRA weights  imports: trainer.{atomic,siblings,assets}
    trainer/generate/   sampling and evaluation       imports: captions, models
    trainer/training/   config, data, loop, ckpts     imports: captions, models, generate
    trainer/cli/        `python -m trainer` commands  imports: anything in trainer
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOST_MODULES = ("comfy", "folder_paths", "nodes",  # ComfyUI's own modules, and our ComfyUI adapters
                "modules", "sdwebui")  # sd-webui's own package, and our sd-webui tab


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_under(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def imported_names(path: Path, known: set[str]) -> set[str]:
    """Absolute names of what `path` imports (relative imports resolved; `from pkg import mod` -> `pkg.mod`).

    Calls `sibling("x")` (trainer/siblings.py, the way trainer reaches `convert`) count as importing `x`.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                found.add(sub if sub in known else base)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sibling"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return {n for n in found if n}


def import_graph(package: str = "trainer") -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports (package `__init__`s only when imported by name)."""
    mods = modules_under(package)
    known = set(mods)
    graph = {}
    for name, path in mods.items():
        edges = set()
        for imp in imported_names(path, known):
            # `from .x.y import z` imports module x.y (or its package __init__ when z is no module).
            while imp and imp not in known and "." in imp:
                imp = imp.rpartition(".")[0]
            if imp in known and imp != name:
                edges.add(imp)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def external_imports(package: str) -> dict[str, set[str]]:
    mods = modules_under(package)
    return {name: imported_names(path, set(mods)) for name, path in mods.items()}


def test_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_relative_lazy_and_submodule_imports():
    graph = import_graph()
    assert "trainer.models.base" in graph["trainer.training.train"]  # lazy, inside a function, `..models.base`
    assert "trainer.training.checkpoint" in graph["trainer.training.train"]  # `from . import checkpoint`
    assert "trainer.atomic" in graph["trainer.captions.captionset"]
    assert "convert" in external_imports("trainer")["trainer.models.lora_apply"]  # through sibling("convert")


def test_no_import_cycles_in_trainer():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycles_in_convert():
    cycle = find_cycle(import_graph("convert"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_sub_packages_exist():
    for sub in ("captions", "models", "training", "generate", "cli"):
        assert (ROOT / "trainer" / sub / "__init__.py").is_file(), sub


# Sub-package -> the trainer sub-packages it must not import.
FORBIDDEN = {
    "trainer.captions": ("trainer.models", "trainer.training", "trainer.generate", "trainer.cli"),
    "trainer.models": ("trainer.captions", "trainer.training", "trainer.generate", "trainer.cli"),
    "trainer.generate": ("trainer.training", "trainer.cli"),
    "trainer.training": ("trainer.cli",),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_rules(package):
    bad = []
    for mod, deps in import_graph().items():
        if mod == package or mod.startswith(package + "."):
            bad += [f"{mod} imports {d}" for d in deps
                    if any(d == f or d.startswith(f + ".") for f in FORBIDDEN[package])]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["trainer", "convert"])
def test_no_host_imports(package):
    """Neither trainer nor convert imports ComfyUI (`comfy`, `folder_paths`), sd-webui (`modules`) or the host
    adapters (`nodes`, `sdwebui`)."""
    bad = [f"{mod} imports {imp}" for mod, imps in external_imports(package).items() for imp in imps
           if imp.split(".")[0] in HOST_MODULES]
    assert not bad, "\n".join(bad)


def test_convert_does_not_import_trainer():
    bad = [f"{mod} imports {imp}" for mod, imps in external_imports("convert").items() for imp in imps
           if imp.split(".")[0] == "trainer"]
    assert not bad, "\n".join(bad)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_every_trainer_package_ships():
    """Each package directory under trainer/ is in pyproject's setuptools `packages` (else the wheel lacks it)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    packages = {module_name(p) for p in (ROOT / "trainer").rglob("__init__.py")}
    missing = sorted(p for p in packages if f"sd_adverb_lora.{p}" not in listed)
    assert not missing, f"not in [tool.setuptools] packages: {missing}"


def test_no_long_functions_without_a_reason():
    """Functions in trainer/ over 80 lines say why in a `# long:` comment on or just after their `def`."""
    bad = []
    for name, path in modules_under("trainer").items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                head = "\n".join(lines[node.lineno - 1: node.body[0].end_lineno + 2])
                if length > 80 and "# long:" not in head:
                    bad.append(f"{name}.{node.name}: {length} lines")
    assert not bad, "\n".join(bad)


# sd-webui's `modules` names the tab may use (fewer names = fewer sd-webui/Forge versions to break it).
WEBUI_MODULES = {"modules.script_callbacks", "modules.shared", "modules.sd_models", "modules.scripts", "modules.paths"}
# Besides the standard library: gradio (the host's), pandas (gradio's own dependency in 3.41 and 4.x: its LinePlot,
# the live loss curve, takes a DataFrame), `networks` (sd-webui's built-in Lora extension, guarded). Never the
# trainer's stack, nor trainer/convert: those run in a subprocess.
WEBUI_ALLOWED = {"gradio", "pandas", "networks"}


def test_sd_webui_tab_imports_only_gradio_stdlib_and_five_webui_modules():
    """scripts/ (sd-webui's entry point) and sdwebui/ (the tab) import nothing of the trainer stack, trainer or
    convert, and of sd-webui's `modules` only the five names; `modules.x` is looked up by name in host.py."""
    bad = []
    for package in ("scripts", "sdwebui"):
        for mod, imps in external_imports(package).items():
            for imp in imps:
                top = imp.split(".")[0]
                if top == "modules" and imp != "modules":
                    ok = imp in WEBUI_MODULES
                elif top == "modules":
                    ok = True  # `from modules import script_callbacks`: checked below by name
                else:
                    ok = top in sys.stdlib_module_names or top in WEBUI_ALLOWED or top == "sdwebui"
                if not ok:
                    bad.append(f"{mod} imports {imp}")
    host = (ROOT / "sdwebui" / "host.py").read_text(encoding="utf-8")
    looked_up = set(re.findall(r'_module\("(\w+)"\)', host))
    bad += [f"sdwebui.host uses modules.{n}" for n in looked_up if f"modules.{n}" not in WEBUI_MODULES]
    script = (ROOT / "scripts" / "adverb_lora.py").read_text(encoding="utf-8")
    bad += [f"scripts imports modules.{n}" for n in re.findall(r"from modules import (\w+)", script)
            if f"modules.{n}" not in WEBUI_MODULES]
    assert not bad, "\n".join(bad)
    assert looked_up, "host.py no longer looks sd-webui's modules up through _module(): update this test"
