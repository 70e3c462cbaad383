"""Hypothesis strategies for random, mostly malformed requests to every PlannerService RPC, built
from the proto descriptors; shared by tests/service/test_fuzz.py (600 requests in `make test`)
and bench/fuzz.py (10,000 in `make bench`)."""

from __future__ import annotations

import math
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from planner_api.v1 import planner_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["PlannerService"]
FAMILIES = ("fuzz", "chinchilla-epoch-2024", "overtraining-gadre-2024-c4", "no-such", "", "BAD!")
NUMBERS = st.one_of(
    st.sampled_from(
        [0.0, -1.0, 1.0, 6.0, 1e21, 1e300, -1e300, 5e-324, math.nan, math.inf, -math.inf]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
)
FORMS = ("", "chinchilla", "data_constrained", "overtraining", "bnsl_compute", "magic")
TEXT = st.one_of(st.sampled_from(FAMILIES + FORMS), st.text(max_size=20))
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# DeleteFamily is left out: it would remove the catalogue families the other requests use.
SKIPPED = ("DeleteFamily",)


def message_of(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts of field values for `descriptor` (a random subset of its fields)."""
    fields = {}
    for field in descriptor.fields:
        value = field_value(field, depth)
        if value is not None:
            fields[field.name] = value
    return st.fixed_dictionaries({}, optional=fields)


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any] | None:
    kind = field.type
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return NUMBERS
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
        return st.integers(-(2**31), 2**31 - 1)
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return st.integers(-(2**63), 2**63 - 1)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING and field.name in ("family", "name"):
        # Mostly real families, so requests get past the lookup to the code behind it.
        return st.one_of(st.sampled_from(FAMILIES[:3]), TEXT)
    if kind == FieldDescriptor.TYPE_STRING:
        return TEXT
    if kind == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        return st.sampled_from([v.number for v in field.enum_type.values] + [99])
    return None


def field_value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key = scalar(field.message_type.fields_by_name["key"])
        value = field_value(field.message_type.fields_by_name["value"], depth + 1)
        return None if key is None or value is None else st.dictionaries(key, value, max_size=3)
    if field.message_type is not None:
        if depth >= 3 or field.message_type.full_name.startswith("google.protobuf"):
            return None
        single = message_of(field.message_type, depth + 1)
    else:
        single = scalar(field)  # type: ignore[assignment]
    if single is None:
        return None
    if field.is_repeated:
        return st.lists(single, max_size=4)
    return single


def build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    cls = getattr(pb, descriptor.name)
    message: Message = cls()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        try:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                target = getattr(message, name)
                for key, item in value.items():
                    if field.message_type.fields_by_name["value"].message_type is None:
                        target[key] = item
                    else:
                        target[key].CopyFrom(
                            build(field.message_type.fields_by_name["value"].message_type, item)
                        )
            elif field.message_type is not None and field.is_repeated:
                getattr(message, name).extend(build(field.message_type, v) for v in value)
            elif field.message_type is not None:
                getattr(message, name).CopyFrom(build(field.message_type, value))
            elif field.is_repeated:
                getattr(message, name).extend(value)
            else:
                setattr(message, name, value)
        except (TypeError, ValueError):
            continue  # a value this field cannot hold (e.g. a surrogate in a string)
    return message


def fuzzed_methods() -> list[MethodDescriptor]:
    """Every RPC the service descriptor has, but those in SKIPPED."""
    return [method for method in SERVICE.methods if method.name not in SKIPPED]


REQUESTS = st.one_of(
    *(st.tuples(st.just(method), message_of(method.input_type)) for method in fuzzed_methods())
)


def method_path(method: MethodDescriptor) -> str:
    return f"/{SERVICE.full_name}/{method.name}"


def seed_family(channel: grpc.Channel) -> None:
    """Family `fuzz` with seven runs of a Chinchilla-like ladder, so fits have data."""
    from planner_api.v1 import planner_pb2_grpc as rpc

    stub = rpc.PlannerServiceStub(channel)
    stub.CreateFamily(pb.CreateFamilyRequest(family=pb.Family(name="fuzz")))
    runs = [
        pb.Run(run_id=f"r{i}", params=n, tokens=20 * n, loss=1.8 + 480 / n**0.35 + 2 / n**0.1)
        for i, n in enumerate([1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1e10])
    ]
    stub.AddRuns(pb.AddRunsRequest(family="fuzz", runs=runs))
