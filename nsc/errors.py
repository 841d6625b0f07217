"""One base for every nsc error, so a caller can report them without a traceback.

Messages never carry a seed: keys travel as `Secret`, whose text is masked.
"""


class NscError(Exception):
    """Anything wrong with identities, keys, JWTs, creds or the store; `fix` says how to
    put it right when the error knows better than its caller."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix
