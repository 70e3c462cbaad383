"""Asserting a call's refusal: its status code, a piece of its message and the one field its
BadRequest details name (none when `field` is empty)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2


def refused(call: Callable[[], Any], code: grpc.StatusCode, field: str, match: str = "") -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error: Any = caught.value
    assert error.code() == code, error.details()
    assert match in error.details(), error.details()
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    fields = []
    for detail in status.details:
        violations = error_details_pb2.BadRequest()
        if detail.Unpack(violations):
            fields += [v.field for v in violations.field_violations]
    assert fields == ([field] if field else []), error.details()
