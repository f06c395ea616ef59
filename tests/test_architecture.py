"""The package's shape: no import cycle between inception_jax's modules, no module over 500 lines,
and no function-level import of inception_jax (the usual way to dodge a cycle). Read from the
source with `ast`, nothing imported."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "inception_jax"
MAX_LINES = 500


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
  """The inception_jax module an imported name lives in (a package's module, or the package)."""
  while name:
    if name in MODULES:
      return name
    name = name.rpartition(".")[0]
  return None


def _imports(node: ast.AST, module: str, is_package: bool) -> list[tuple[str, ast.stmt]]:
  """(imported inception_jax module, statement) for the import statements under `node`."""
  found = []
  for stmt in ast.walk(node):
    if isinstance(stmt, ast.Import):
      names = [a.name for a in stmt.names]
    elif isinstance(stmt, ast.ImportFrom):
      base = stmt.module or ""
      if stmt.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - stmt.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
      names = [f"{base}.{a.name}" for a in stmt.names]
    else:
      continue
    for name in names:
      target = _resolve(name) if name.startswith("inception_jax") else None
      if target and target != module:
        found.append((target, stmt))
  return found


def _is_type_checking(stmt: ast.If) -> bool:
  return isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING"


def module_level_imports(module: str) -> set[str]:
  """What importing `module` imports of inception_jax (function bodies and TYPE_CHECKING
  blocks excluded)."""
  path = MODULES[module]
  tree = ast.parse(path.read_text())
  targets = set()
  for stmt in tree.body:
    if isinstance(stmt, ast.If) and _is_type_checking(stmt):
      continue
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
      continue
    targets |= {t for t, _ in _imports(stmt, module, path.name == "__init__.py")}
  return targets


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """A cycle of `graph` as a list of nodes (first == last), or None."""
  state: dict[str, int] = {}  # 1: on the stack, 2: done
  stack: list[str] = []

  def visit(node: str) -> list[str] | None:
    state[node] = 1
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        return [*stack[stack.index(nxt) :], nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def test_find_cycle_finds_one():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_module_graph_has_no_cycle():
  graph = {m: module_level_imports(m) for m in MODULES}
  assert len(graph) > 40 and graph["inception_jax.training.loop"] >= {
    "inception_jax.evaluation.evaluate",
    "inception_jax.training.state",
  }
  assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_evaluation_does_not_import_the_training_loop():
  graph = {m: module_level_imports(m) for m in MODULES}
  assert "inception_jax.training.loop" not in graph["inception_jax.evaluation.evaluate"]


def test_no_module_is_over_500_lines():
  long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
  assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_function_level_import_of_inception_jax():
  found = []
  for module, path in MODULES.items():
    tree = ast.parse(path.read_text())
    for fn in ast.walk(tree):
      if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        for target, stmt in _imports(fn, module, path.name == "__init__.py"):
          found.append(f"{path.relative_to(PACKAGE.parent)}:{stmt.lineno} imports {target}")
  assert not found, "function-level imports of inception_jax:\n" + "\n".join(sorted(set(found)))
