"""Tasks for the berth template repository: `inv --list`.

The generated projects have their own tasks (template/berth/tasks.py); these
only drive a demo rendering of this template.
"""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Context, Exit, task

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

from harness import REPO, render, run_in

DEMO = REPO / "demo"


@task(help={"path": "where to render the demo project (default ./demo)"})
def demo(c: Context, path: str = str(DEMO)) -> None:
    """Render a demo project with default answers (once) and bring its stack up healthy."""
    target = Path(path).resolve()
    if not (target / ".copier-answers.yml").exists():
        print(f"rendering the template with default answers into {target}")
        render(target)
    result = run_in(target, "invoke", "up", check=False)
    if result.returncode:
        raise Exit(code=result.returncode)


@task(help={"path": "the demo project (default ./demo)"})
def demo_down(c: Context, path: str = str(DEMO)) -> None:
    """Stop the demo stack; its volumes (data) are kept."""
    run_in(Path(path).resolve(), "invoke", "down")
