"""The layering rules, checked on the source: handlers never reach connections, nothing
registers itself on import, and no package has an import cycle."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("imserver", "imclient")


def _modules():
    """{module name: parsed tree} for every module of the packages."""
    out = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    module = module.removesuffix(".__init__")
                    with open(path, encoding="utf-8") as f:
                        out[module] = ast.parse(f.read(), path)
    return out


def _imports(module, tree, known):
    """The modules of ``known`` that ``module`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                base = ".".join(module.split(".")[:-node.level] + [node.module])
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n in known and n != module)
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(m, tree, modules) for m, tree in modules.items()}
    # A package's __init__ importing its own modules is how packages work, not a cycle.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_handlers_know_no_connections_and_write_nothing():
    forbidden_modules = {"imserver.connections", "imserver.notifier", "imserver.protocol",
                         "imserver.output", "imserver.wire"}
    forbidden_calls = {"write_frame", "send", "send_error", "write_users", "write_topic",
                       "new_entries", "ephemeral", "publish", "end_session"}
    modules = _modules()
    offences = []
    for module, tree in modules.items():
        if not module.startswith("imserver.handlers."):
            continue
        offences += [f"{module} imports {m}" for m in _imports(module, tree, modules) & forbidden_modules]
        offences += [f"{module}:{node.lineno} calls .{node.func.attr}()" for node in ast.walk(tree)
                     if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                     and node.func.attr in forbidden_calls]
    assert offences == []


def test_no_module_registers_into_another_on_import():
    """Module-level code may declare its own domain, never append to or register with another
    module's objects (the old op table, stream SOURCES, a server)."""
    offences = []
    for module, tree in _modules().items():
        for node in tree.body:
            call = node.value if isinstance(node, ast.Expr) else None
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
                continue
            target = call.func.value
            while isinstance(target, ast.Attribute):
                target = target.value
            if isinstance(target, ast.Name) and target.id not in ("domain",) and \
                    call.func.attr in ("append", "extend", "register", "add", "update", "setdefault"):
                offences.append(f"{module}:{node.lineno} {ast.unparse(call)[:60]}")
    assert offences == []
