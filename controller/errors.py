"""The controller's errors: one base, a subclass wherever a caller acts differently."""


class GridwardenError(Exception):
    """Base of every error the controller raises on purpose."""


class ConfigError(GridwardenError, ValueError):
    """The configuration is unusable. ``problems`` has one line per problem, each naming
    the file and the key path, ready to print."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
