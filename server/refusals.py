"""Calls the server refuses or stops for its own reasons (load, deadlines, shutdown), not the
request's: each carries the status code the caller gets."""

from __future__ import annotations

import grpc


class Refused(Exception):
    """The call gets `code` with `message`; `retry_after` (seconds) becomes a RetryInfo hint."""

    def __init__(
        self, code: grpc.StatusCode, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


def overloaded(message: str, retry_after: float | None) -> Refused:
    return Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, message, retry_after)


def deadline_passed(seconds: float) -> Refused:
    return Refused(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        f"the call ran past its deadline ({seconds:g} s; the server's default when the caller "
        "sets none); its computation was stopped",
    )


def shutting_down() -> Refused:
    return Refused(
        grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry on another replica", 1.0
    )
