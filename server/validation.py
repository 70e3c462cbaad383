"""Checks of request fields that are the service's business (names, batches, pages)."""

from __future__ import annotations

import base64
import hashlib
import json
import re

from planner.errors import InvalidInput
from planner.forms import form_kind
from planner.validation import finite, optional_positive, positive
from planner_api.v1 import planner_pb2 as pb
from server.store.records import RunRecord

FAMILY_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
MAX_DESCRIPTION = 2000
MAX_METRIC = 200
MAX_TAGS = 32
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
MAX_RUN_ID = 200
# Run.metrics: per row, and each name (the proto's comment).
MAX_METRICS = 64
METRIC_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
# Names of pools and jobs inside one request.
MAX_ITEM_NAME = 100

CONVENTIONS: dict[int, str] = {
    pb.PARAM_CONVENTION_UNSPECIFIED: "total",
    pb.PARAM_CONVENTION_TOTAL: "total",
    pb.PARAM_CONVENTION_NON_EMBEDDING: "non_embedding",
}


def family_name(field: str, name: str) -> str:
    if not name:
        raise InvalidInput(field, "is required")
    if not FAMILY_NAME.match(name):
        raise InvalidInput(
            field,
            f"{name[:120]!r} is not a valid family name: use 1-100 characters of a-z, 0-9, "
            "'.', '_', '-', starting with a letter or digit",
        )
    return name


def description(field: str, value: str) -> str:
    return text(field, value, MAX_DESCRIPTION)


def metric(field: str, value: str) -> str:
    """What a family's losses measure: one printable line (it is shown, and compared whole)."""
    text(field, value, MAX_METRIC)
    if not value.isprintable():
        raise InvalidInput(field, "must be printable text on one line (no control characters)")
    return value


def convention(field: str, value: int) -> str:
    if value not in CONVENTIONS:
        raise InvalidInput(field, f"unknown parameter convention {value}")
    return CONVENTIONS[value]


def law_form(field: str, form: str, optional: bool = False) -> str:
    """A known law form name ("" allowed when `optional`: the family's default form)."""
    if form or not optional:
        form_kind(form, field)  # names the known forms when it is none of them
    return form


def page_size(field: str, value: int, default: int, maximum: int) -> int:
    if value < 0:
        raise InvalidInput(field, f"must be >= 0, got {value}")
    if value > maximum:
        raise InvalidInput(field, f"must be at most {maximum}, got {value}")
    return value or default


# Tokens this service issues are a few dozen characters.
MAX_PAGE_TOKEN = 1000


def encode_page_token(position: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode()


def decode_page_token(field: str, token: str) -> str | int | None:
    if not token:
        return None
    if len(token) > MAX_PAGE_TOKEN:
        raise InvalidInput(field, "is not a token this service issued")
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        # RecursionError: deeply nested JSON in a forged token.
        raise InvalidInput(field, "is not a token this service issued") from exc
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    raise InvalidInput(field, "is not a token this service issued")


def encode_page_pair(first: str, second: str) -> str:
    """A page token holding a two-part position (e.g. a law's form and version)."""
    return encode_page_token(f"{first}/{second}")


def decode_page_pair(field: str, token: str) -> tuple[str, str] | None:
    """The two parts encode_page_pair joined; None for the first page."""
    position = decode_page_token(field, token)
    if position is None:
        return None
    first, separator, second = str(position).partition("/")
    if not separator:
        raise InvalidInput(field, "is not a token this service issued")
    return first, second


# Values beyond these make the laws' powers and logs leave float range in a fit (N^-alpha with
# alpha up to 5, k N D); no real run is near them.
MIN_COUNT = 1.0
MAX_COUNT = 1e24
MAX_FLOPS = 1e50
MAX_LOSS = 1e3
MIN_WEIGHT = 1e-6
MAX_WEIGHT = 1e6


def _in_range(field: str, value: float, low: float, high: float, what: str) -> float:
    if not low <= value <= high:
        raise InvalidInput(field, f"{value:g} is outside [{low:g}, {high:g}] ({what})")
    return value


def run_record(field: str, run: pb.Run) -> RunRecord:
    """A validated run; an empty run_id is derived from the values, so re-uploads are no-ops."""
    params = positive(f"{field}.params", run.params)
    tokens = positive(f"{field}.tokens", run.tokens)
    loss = positive(f"{field}.loss", run.loss)
    _in_range(f"{field}.params", params, MIN_COUNT, MAX_COUNT, "a count of parameters")
    _in_range(f"{field}.tokens", tokens, MIN_COUNT, MAX_COUNT, "a count of tokens")
    _in_range(f"{field}.loss", loss, 0.0, MAX_LOSS, "nats per token")
    unique = optional_positive(
        f"{field}.unique_tokens", run.unique_tokens if run.HasField("unique_tokens") else None
    )
    if unique is not None and unique > tokens * (1 + 1e-12):
        raise InvalidInput(
            f"{field}.unique_tokens", f"{unique:g} exceeds the run's tokens {tokens:g}"
        )
    flops = optional_positive(f"{field}.flops", run.flops if run.HasField("flops") else None)
    if flops is not None:
        _in_range(f"{field}.flops", flops, MIN_COUNT, MAX_FLOPS, "training FLOPs")
    weight = optional_positive(f"{field}.weight", run.weight if run.HasField("weight") else None)
    if weight is not None:
        _in_range(f"{field}.weight", weight, MIN_WEIGHT, MAX_WEIGHT, "a relative weight")
    lr = run.lr if run.HasField("lr") else None
    if lr is not None and finite(f"{field}.lr", lr) < 0:
        raise InvalidInput(f"{field}.lr", f"must be >= 0, got {lr:g}")
    batch = optional_positive(
        f"{field}.batch_tokens", run.batch_tokens if run.HasField("batch_tokens") else None
    )
    step = run.step if run.HasField("step") else None
    if step is not None and step < 0:
        raise InvalidInput(f"{field}.step", f"must be >= 0, got {step}")
    if len(run.tags) > MAX_TAGS:
        raise InvalidInput(f"{field}.tags", f"has {len(run.tags)} entries; at most {MAX_TAGS}")
    for key, value in run.tags.items():
        if not key or len(key) > MAX_TAG_KEY:
            raise InvalidInput(f"{field}.tags", f"keys must be 1-{MAX_TAG_KEY} characters")
        if len(value) > MAX_TAG_VALUE:
            raise InvalidInput(f"{field}.tags[{key}]", f"is longer than {MAX_TAG_VALUE}")
    metrics = run_metrics(f"{field}.metrics", dict(run.metrics))
    # Weight, lr, batch and metrics join the derived id only when given, so ids derived before
    # they existed hold (each tagged, so that one's value cannot pass for another's).
    values: tuple[object, ...] = (params, tokens, loss, unique, flops, step)
    values += () if weight is None else (weight,)
    values += () if lr is None else (("lr", lr),)
    values += () if batch is None else (("batch_tokens", batch),)
    # Sorted: a map's order on the wire is not the row's identity.
    values += (("metrics", tuple(sorted(metrics.items()))),) if metrics else ()
    if step is not None and not run.run_id:
        raise InvalidInput(
            f"{field}.run_id",
            "is required with a step: checkpoints of one training run share its run_id",
        )
    run_id = run.run_id or _derived_run_id(*values)
    if len(run_id) > MAX_RUN_ID:
        raise InvalidInput(f"{field}.run_id", f"is longer than {MAX_RUN_ID} characters")
    return RunRecord(
        run_id,
        params,
        tokens,
        loss,
        unique,
        flops,
        step,
        dict(run.tags),
        weight,
        lr,
        batch,
        metrics,
    )


def run_metrics(field: str, metrics: dict[str, float]) -> dict[str, float]:
    """A row's named metrics: at most MAX_METRICS, names METRIC_NAME, values finite."""
    if len(metrics) > MAX_METRICS:
        raise InvalidInput(field, f"has {len(metrics)} entries; at most {MAX_METRICS}")
    for name in sorted(metrics):
        # json.dumps quotes the name as a map key is written; a long bad name is cut short.
        where = f"{field}[{json.dumps(name[:80])}]"
        if not METRIC_NAME.fullmatch(name):
            raise InvalidInput(
                where, "is not a metric name: use 1-64 characters of A-Z, a-z, 0-9, _ . : / -"
            )
        finite(where, metrics[name])
    return metrics


def _derived_run_id(*values: object) -> str:
    digest = hashlib.sha256(repr(values).encode()).hexdigest()[:16]
    return f"auto-{digest}"


def runs_batch(field: str, runs: list[pb.Run], limit: int) -> list[RunRecord]:
    if not runs:
        raise InvalidInput(field, "is empty; give at least one run")
    if len(runs) > limit:
        raise InvalidInput(
            field, f"has {len(runs)} runs; at most {limit} per request, split the upload"
        )
    records = [run_record(f"{field}[{i}]", run) for i, run in enumerate(runs)]
    first_index: dict[tuple[str, int | None], int] = {}
    for index, record in enumerate(records):
        earlier = first_index.setdefault(record.key, index)
        if earlier != index and records[earlier] != record:
            at = "" if record.step is None else f" at step {record.step}"
            raise InvalidInput(
                f"{field}[{index}].run_id",
                f"{record.run_id!r}{at} repeats runs[{earlier}] with other values",
            )
    params_of: dict[str, tuple[int, float]] = {}
    for index, record in enumerate(records):
        first, params = params_of.setdefault(record.run_id, (index, record.params))
        if params != record.params:
            raise InvalidInput(
                f"{field}[{index}].params",
                f"{record.params:g} differs from runs[{first}].params = {params:g}; checkpoints "
                f"of run {record.run_id!r} must share its parameter count",
            )
    unique = {r.key: r for r in records}
    return list(unique.values())


MAX_RUN_IDS = 10_000


def run_ids(field: str, values: list[str]) -> list[str]:
    """Run ids to act on: 1 to MAX_RUN_IDS non-empty ids of at most MAX_RUN_ID characters."""
    if not values:
        raise InvalidInput(field, "is empty; give at least one run_id")
    if len(values) > MAX_RUN_IDS:
        raise InvalidInput(field, f"has {len(values)} ids; at most {MAX_RUN_IDS} per request")
    for index, value in enumerate(values):
        if not value or len(value) > MAX_RUN_ID:
            raise InvalidInput(f"{field}[{index}]", f"must be 1-{MAX_RUN_ID} characters")
    return values


def law_parameters(field: str, values: dict[str, float]) -> dict[str, float]:
    if not values:
        raise InvalidInput(field, "is empty; give every parameter of the form")
    return {name: finite(f"{field}.{name}", value) for name, value in values.items()}


MAX_METHOD = 40
MAX_SOURCE_TEXT = 2000
MIN_FLOPS_PER_PARAM_TOKEN = 1.0
MAX_FLOPS_PER_PARAM_TOKEN = 100.0


def text(field: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidInput(field, f"is {len(value)} characters; at most {limit}")
    if "\x00" in value:
        raise InvalidInput(field, "contains a NUL character")
    return value


def flops_per_param_token(field: str, value: float) -> float:
    """FLOPs per parameter per token: 6 for dense training; 0 means 6."""
    k = 6.0 if value == 0 else finite(field, value)
    if not MIN_FLOPS_PER_PARAM_TOKEN <= k <= MAX_FLOPS_PER_PARAM_TOKEN:
        raise InvalidInput(
            field,
            f"must be between {MIN_FLOPS_PER_PARAM_TOKEN:g} and {MAX_FLOPS_PER_PARAM_TOKEN:g} "
            f"(6 for dense training), got {k:g}",
        )
    return k
