"""The study's one error: bad input a planner can fix (a file, a column, a setting)."""

from controller.errors import GridwardenError


class StudyError(GridwardenError, ValueError):
    """Unusable study input. The message is one line naming the file (and line) at fault."""
