"""The shape the code must keep: serving never imports training code, transports only
adapt the pipeline, and the admin side reaches the serving path through its seams."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

# Build-time and evaluation code: the training package, the model builders, and the
# heavy libraries only they use.
TRAINING = ("semroute.quality", "models", "torch", "scipy", "matplotlib", "tqdm", "threadpoolctl")


def _imports(path: str) -> set[str]:
    """Every module a source file imports (absolute names, `from x import y` as x)."""
    tree = ast.parse((REPO / path).read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_serving_imports_no_training_code() -> None:
    code = (
        "import sys\n"
        "import semroute.server.app, semroute.pipeline, semroute.cli\n"
        "from semroute.server.app import load_router\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({TRAINING!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "", f"serving imported training code: {out.stdout.strip()}"


def test_the_grpc_transport_only_adapts_the_pipeline() -> None:
    core = {
        "semroute.router",
        "semroute.batcher",
        "semroute.decision_cache",
        "semroute.similar_cache",
        "semroute.semantic_cache",
        "semroute.policy",
    }
    reached = _imports("semroute/server/service.py") & core
    assert not reached, f"the gRPC handler reaches past the pipeline into {sorted(reached)}"
    assert "semroute.pipeline" in _imports("semroute/server/service.py")
    # Envoy ext_proc: the pipeline, plus only the body parser and as_decision of messages.
    ext_proc = _imports("semroute/server/ext_proc.py")
    reached = ext_proc & (core - {"semroute.messages"})
    assert not reached, f"the ext_proc adapter reaches past the pipeline into {sorted(reached)}"
    assert {"semroute.pipeline", "semroute.openai_body"} <= ext_proc
    assert "decide(" in (REPO / "semroute/server/ext_proc.py").read_text()


def test_admin_reaches_serving_only_through_its_seams() -> None:
    for path in sorted((REPO / "semroute" / "admin").glob("*.py")):
        rel = str(path.relative_to(REPO))
        server_imports = {m for m in _imports(rel) if m.startswith("semroute.server")}
        if path.name == "cli.py":  # the admin command line runs apart from any server
            server_imports -= {"semroute.server.app"}
        # Registering services on the server (decoding guards) is allowed; handler
        # internals are not.
        assert server_imports <= {"semroute.server.decoding"}, (rel, server_imports)
        tree = ast.parse(path.read_text())
        private = [
            f"{n.module}.{a.name}"
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("semroute")
            for a in n.names
            if a.name.startswith("_")
        ]
        assert not private, f"{rel} imports private names {private}"


def test_the_tier_order_is_written_once() -> None:
    """Only the router calls the fast tier; everyone else goes through early()/finish()."""
    for path in sorted((REPO / "semroute").rglob("*.py")):
        if path.name == "router.py" or "/v1/" in str(path):
            continue
        assert "fast_decide(" not in path.read_text(), path
