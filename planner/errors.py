"""Domain errors. The service maps each kind to one gRPC status; messages are for people."""

from __future__ import annotations


class PlannerError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross the solver pool's process boundary; rebuild them field by field.
        return (_restore, (type(self), self.__dict__.copy(), self.args))


class InvalidInput(PlannerError):
    """A value is malformed or out of range (NaN, inf, non-positive, unknown name)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field)
        self.reason = reason


class Infeasible(PlannerError):
    """Well-formed, but no answer exists (a loss target at or below E, caps too tight)."""


class SolverFailed(PlannerError):
    """A numerical solver did not reach a trustworthy answer."""


class Unsupported(PlannerError):
    """The request is valid but this combination is not implemented."""


class WrongLawForm(PlannerError):
    """The law selected is of a form this query cannot use (a loss-curve law for a final-loss
    plan, say); the message names the forms it needs."""


def _restore(
    cls: type[PlannerError], state: dict[str, object], args: tuple[object, ...]
) -> PlannerError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
