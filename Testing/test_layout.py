"""The repository keeps the extension layout, its build files point at real files, and the engine stays free of
Slicer, Qt and VTK."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE_FORBIDDEN = {"slicer", "qt", "ctk", "vtk"}


@pytest.mark.parametrize(
    "relative",
    [
        "CMakeLists.txt",
        "DiffuX2CT/DiffuX2CT.py",
        "DiffuX2CT/CMakeLists.txt",
        "DiffuX2CT/Resources/Icons/DiffuX2CT.png",
        "DiffuX2CT/Resources/UI/DiffuX2CT.ui",
        "DiffuX2CTLib/__init__.py",
        "README.md",
        "DiffuX2CT.png",
        "pyproject.toml",
        "Makefile",
        ".ci/run",
        "Resources/SampleData/ap.nrrd",
        "Resources/SampleData/lateral.nrrd",
        "Resources/SampleData/ct.nrrd",
    ],
)
def test_layout_file_exists(relative):
    assert (ROOT / relative).is_file()


def test_icon_is_128_pixels_square():
    header = (ROOT / "DiffuX2CT.png").read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[16:20], "big") == 128 and int.from_bytes(header[20:24], "big") == 128


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (ROOT / "DiffuX2CTLib").rglob("*.py") if p.name not in {"scene.py", "result_placement.py"}),
    ids=lambda p: p.name,
)
def test_engine_never_imports_slicer_qt_or_vtk(path):
    assert not (_imported_roots(path) & ENGINE_FORBIDDEN)


PART_LEVELS = {
    "core": 0,
    "imaging": 1,
    "anatomy": 2,
    "model": 2,
    "realct": 2,
    "diffusion": 3,
    "inference": 4,
    "training": 5,
    "app": 5,
    "evaluation": 6,
    "cli": 7,
}
"""The engine's parts from the ground up: a part may import itself and the parts below it, never one beside or
above it (so ``imaging`` knows nothing of models, and the sampler nothing of reconstruction options)."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _engine_imports(path: Path) -> set[str]:
    """Every engine module ``path`` imports anywhere (top level, functions, ``TYPE_CHECKING`` blocks), relative
    imports resolved; ``from package import module`` counts the module."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names if alias.name.startswith("DiffuX2CTLib")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if not module.startswith("DiffuX2CTLib"):
                continue
            modules.add(module)
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                if (ROOT / (candidate.replace(".", "/") + ".py")).is_file() or (
                    ROOT / candidate.replace(".", "/")
                ).is_dir():
                    modules.add(candidate)
    return modules - {"DiffuX2CTLib"}


def _part(module: str) -> str:
    return module.split(".")[1]


ENGINE_FILES = sorted((ROOT / "DiffuX2CTLib").rglob("*.py"))


def test_every_engine_file_lives_in_a_part():
    """No flat files beside the folders: only the package's ``__init__`` and the command line sit at the top."""
    top = {p.name for p in (ROOT / "DiffuX2CTLib").glob("*.py")}
    assert top == {"__init__.py", "cli.py"}, sorted(top)
    folders = {p.name for p in (ROOT / "DiffuX2CTLib").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(PART_LEVELS), f"parts without a level in PART_LEVELS: {sorted(folders - set(PART_LEVELS))}"


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: p.relative_to(ROOT / "DiffuX2CTLib").as_posix())
def test_imports_point_down_the_parts_only(path):
    if path.parent == ROOT / "DiffuX2CTLib" and path.name == "__init__.py":
        return
    here = _part(_module_name(path))
    for module in _engine_imports(path):
        there = _part(module)
        assert there == here or PART_LEVELS[there] < PART_LEVELS[here], (
            f"{here} imports {module} ({there} is not below it)"
        )


def test_no_import_circles_between_engine_files():
    graph = {
        _module_name(p): {m for m in _engine_imports(p) if not (ROOT / m.replace(".", "/")).is_dir()}
        for p in ENGINE_FILES
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            assert state.get(target) != 1, "import circle: " + " -> ".join(path[path.index(target) :] + [target])
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_import_checks_see_a_circle_and_an_upward_arrow(tmp_path, monkeypatch):
    """The checks above can fail: a planted upward import and a planted circle are both reported."""
    fake = tmp_path / "DiffuX2CTLib"
    (fake / "core").mkdir(parents=True)
    (fake / "imaging").mkdir()
    (fake / "core" / "a.py").write_text("from ..imaging.b import thing\n")
    (fake / "imaging" / "b.py").write_text("from ..core.a import other\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert "DiffuX2CTLib.imaging.b" in _engine_imports(fake / "core" / "a.py")
    with pytest.raises(AssertionError, match="is not below it"):
        test_imports_point_down_the_parts_only(fake / "core" / "a.py")
    monkeypatch.setattr(__import__(__name__), "ENGINE_FILES", [fake / "core" / "a.py", fake / "imaging" / "b.py"])
    with pytest.raises(AssertionError, match="import circle"):
        test_no_import_circles_between_engine_files()


def _cmake_listed_files(cmake: Path) -> list[str]:
    text = cmake.read_text(encoding="utf-8")
    names = re.findall(r"^\s+([\w${}./-]+\.(?:py|png|ui|nrrd|json|safetensors))\s*$", text, flags=re.MULTILINE)
    return [n.replace("${MODULE_NAME}", "DiffuX2CT") for n in names]


def test_every_file_listed_in_the_cmake_files_exists():
    module = ROOT / "DiffuX2CT" / "CMakeLists.txt"
    listed = _cmake_listed_files(module)
    assert "DiffuX2CT.py" in listed and "DiffuX2CTLib/__init__.py" in listed
    for name in listed:
        assert (module.parent / name).is_file() or (ROOT / name).is_file(), name
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "DiffuX2CTLib").rglob("*.py")}
    assert shipped <= set(listed), (
        f"library files missing from DiffuX2CT/CMakeLists.txt: {sorted(shipped - set(listed))}"
    )


def test_extension_metadata_declares_pytorch_dependency():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r'set\(EXTENSION_DEPENDS\s+"PyTorch"\)', text)
    assert "add_subdirectory(DiffuX2CT)" in text


def test_ui_file_is_well_formed_and_declares_its_custom_widgets():
    tree = ET.parse(ROOT / "DiffuX2CT" / "Resources" / "UI" / "DiffuX2CT.ui")
    used = {w.get("class") for w in tree.iter("widget")}
    declared = {c.findtext("class") for c in tree.iter("customwidget")}
    custom = {c for c in used if c.startswith(("qMRML", "ctk", "qSlicer"))}
    assert custom <= declared
    names = {w.get("name") for w in tree.iter("widget")}
    for source in (ROOT / "DiffuX2CT").rglob("*.py"):
        for looked_up in re.findall(r"self\.ui\.(\w+)", source.read_text(encoding="utf-8")):
            assert looked_up in names, (source.name, looked_up)


def _parameter_node_fields() -> set[str]:
    tree = ast.parse((ROOT / "DiffuX2CT" / "DiffuX2CTWidgets" / "parameters.py").read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DiffuX2CTParameterNode")
    return {item.target.id for item in node.body if isinstance(item, ast.AnnAssign)}


def test_ui_parameter_names_match_the_parameter_node():
    tree = ET.parse(ROOT / "DiffuX2CT" / "Resources" / "UI" / "DiffuX2CT.ui")
    bound = {p.findtext("string") for p in tree.iter("property") if p.get("name") == "SlicerParameterName"}
    assert bound and bound <= _parameter_node_fields()
    assert {"apVolume", "lateralVolume", "outputVolume", "steps", "seed", "samples", "device", "modelFolder"} <= bound


def test_module_file_has_slicer_classes_and_stays_free_of_torch():
    source = ROOT / "DiffuX2CT" / "DiffuX2CT.py"
    classes = {n.name for n in ast.parse(source.read_text(encoding="utf-8")).body if isinstance(n, ast.ClassDef)}
    assert classes == {
        "DiffuX2CT",
        "DiffuX2CTWidget",
        "DiffuX2CTLogic",
        "DiffuX2CTTest",
    }  # the rest is in DiffuX2CTWidgets/
    for path in (ROOT / "DiffuX2CT").rglob("*.py"):
        assert not (_imported_roots(path) & {"torch", "monai"}), path
    cmake = (ROOT / "DiffuX2CT" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "WITH_GENERIC_TESTS" in cmake and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake
    listed = set(_cmake_listed_files(ROOT / "DiffuX2CT" / "CMakeLists.txt"))
    widgets = {
        p.relative_to(ROOT / "DiffuX2CT").as_posix() for p in (ROOT / "DiffuX2CT" / "DiffuX2CTWidgets").glob("*.py")
    }
    assert widgets <= listed, sorted(widgets - listed)


def test_license_file_matches_the_declared_license():
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8") and "Version 2.0" in (
        ROOT / "LICENSE"
    ).read_text(encoding="utf-8")
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(
        r"set\(EXTENSION_LICENSE_FILE \$\{CMAKE_CURRENT_SOURCE_DIR\}/LICENSE\)",
        (ROOT / "CMakeLists.txt").read_text(encoding="utf-8"),
    )


def test_scene_logic_imports_no_qt_and_loads_no_torch():
    assert not (_imported_roots(ROOT / "DiffuX2CTLib" / "app" / "scene.py") & {"qt", "ctk", "torch", "monai"})
    import subprocess
    import sys

    probe = (
        "import sys, DiffuX2CTLib.app.scene, DiffuX2CTLib.model.card; "
        "print(sorted({'torch', 'monai', 'qt'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_extension_metadata_is_complete():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert re.search(rf'set\(EXTENSION_{key}\s+"[^"]+"\)', text), key
    screenshot = re.search(r'EXTENSION_SCREENSHOTURLS\s+"[^"]+/main/([^"]+)"', text).group(1)
    assert (ROOT / screenshot).is_file()


def test_extensions_index_catalog_entry_follows_the_v1_0_2_schema():
    import json

    entry = json.loads((ROOT / "packaging" / "DiffuX2CT.json").read_text(encoding="utf-8"))
    # Slicer's catalog-entry schema v1.0.2: required $schema, category, scm_url; no keys beyond those it defines.
    allowed = {
        "$schema",
        "category",
        "scm_url",
        "scm_revision",
        "scm_type",
        "build_dependencies",
        "dicom_support_rule",
        "build_subdirectory",
        "enabled",
        "tier",
    }
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert all(isinstance(entry[k], str) for k in ("category", "scm_url", "scm_revision"))
    assert entry["build_dependencies"] == ["PyTorch"]
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert f'set(EXTENSION_CATEGORY "{entry["category"]}")' in cmake
