"""The course's reading order is its import order: every file imports only files above it.

The order is written once, in README.md's "Read the source as a course"; this test reads it
there, checks that it lists every module of minippl/ and kernels/ exactly once, and that no
module imports (at any depth, lazily included) a module listed after it.
"""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def reading_order():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Read the source as a course"):]
    section = section[:section.index("\n## ", 1)]
    paths = []
    for path in re.findall(r"`([\w/]+\.py)`", section):
        if path.startswith("tests/"):
            continue
        module = "minippl." + path[:-3].replace("/", ".")  # kernels/ is installed as minippl.kernels
        if module not in paths:
            paths.append(module)
    return paths


def all_modules():
    found = set()
    for folder, package in ((ROOT / "minippl", "minippl"), (ROOT / "kernels", "minippl.kernels")):
        for file in folder.rglob("*.py"):
            if file.name != "__init__.py":
                found.add(package + "." + ".".join(file.relative_to(folder).with_suffix("").parts))
    return found


def source_of(module):
    parts = module.split(".")[1:]
    base = ROOT / "kernels" if parts[0] == "kernels" else ROOT / "minippl"
    parts = parts[1:] if parts[0] == "kernels" else parts
    return base.joinpath(*parts).with_suffix(".py")


def imported_modules(module, known):
    """The minippl modules that ``module`` imports (packages' __init__ files are not chapters)."""
    tree = ast.parse(source_of(module).read_text())
    package = module.rsplit(".", 1)[0]
    result = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                for candidate in (f"{target}.{alias.name}", target):
                    if candidate in known:
                        result.add(candidate)
                        break
        elif isinstance(node, ast.Import):
            result.update(alias.name for alias in node.names if alias.name in known)
    result.discard(module)
    return result


def test_the_reading_order_lists_every_module_once():
    order, modules = reading_order(), all_modules()
    assert len(order) == len(set(order))
    assert set(order) == modules, (sorted(modules - set(order)), sorted(set(order) - modules))


def test_no_module_imports_a_later_one():
    order = reading_order()
    rank = {module: i for i, module in enumerate(order)}
    later = [(module, other) for module in order for other in imported_modules(module, rank)
             if rank[other] > rank[module]]
    assert not later, "imports from a later file of the course: " + ", ".join(f"{a} -> {b}" for a, b in later)
