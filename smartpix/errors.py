"""The one exception type for failures a user can fix (bad input, missing tool)."""


class PipelineError(Exception):
    """A user-facing failure: the CLI prints its message on one line and exits non-zero."""
