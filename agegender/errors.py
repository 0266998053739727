"""The one exception type a user sees: a single line saying what, where and what to do."""


class AgegenderError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line and exits."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
