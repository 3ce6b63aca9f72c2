"""Tasks for this project: run `inv --list` to see them."""

from berth.tasks import ns  # noqa: F401 - invoke picks up `ns`
