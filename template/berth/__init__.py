"""berth: the tooling that runs this project's Docker Compose stack.

`inv --list` shows the tasks; `berth.tasks` defines them. Modules stay small
and import nothing heavy at start-up, so `inv` adds little to `docker compose`.
"""

from __future__ import annotations

__version__ = "0.1.0"
