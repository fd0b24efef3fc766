"""Hostile records on generations.v1, the topic every producer may write (the agent's input)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any

from royalflow import topics
from royalflow.contracts.events import to_json_bytes

from tests.hostile.corpus import OTHER_VERSION, Built, Context, case, dumps

G = topics.GENERATIONS
Mutation = Callable[[dict[str, Any], Context], "bytes | dict[str, Any] | None"]


def mutated(name: str, category: str, *expect: str, xfail: str | None = None) -> Callable[[Mutation], Mutation]:
    """A valid event of the case's own id, changed by ``mutate`` (in place, or returning new bytes)."""
    def register(mutate: Mutation) -> Mutation:
        @case(name, category, G, *expect, xfail=xfail)
        def build(ctx: Context) -> Built:
            event_id = "h-" + name.replace("_", "-")
            doc = ctx.doc(event_id)
            out = mutate(doc, ctx)
            value = out if isinstance(out, bytes) else dumps(doc if out is None else out)
            built = ctx.raw_gen(event_id, value)
            built.absent_generation = event_id
            return built
        return mutate
    return register


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any], ctx: Context) -> None:
        *parents, last = path.split(".")
        target = doc
        for p in parents:
            target = target[p]
        target[last] = value
    return mutate


def _raw(value: bytes) -> Mutation:
    return lambda doc, ctx: value


def _register(name: str, category: str, expect: tuple[str, ...], mutate: Mutation) -> None:
    mutated(name, category, *expect)(mutate)


BAD_JSON = ("malformed_json",)
SCHEMA = ("schema_violation",)
AMOUNT = ("invalid_amount",)
CONTENT = ("bad_content",)
TIME = ("invalid_timestamp",)
# JSON bounds may refuse these before parsing (malformed_json) or the schema/amount check after.
BOUNDED = ("malformed_json", "schema_violation", "invalid_amount", "oversized_payload")

DEEP = 100_000
TABLE: list[tuple[str, str, tuple[str, ...], Mutation]] = [
    # --- bytes that are not a JSON document ------------------------------------------------
    ("empty_value", "encoding", BAD_JSON, _raw(b"")),
    ("bad_utf8", "encoding", BAD_JSON, lambda d, c: dumps(d).replace(b"hostile-suite", b"hostile-\xff\xfe-suite")),
    ("utf16_bom", "encoding", BAD_JSON, lambda d, c: b"\xff\xfe" + dumps(d).decode().encode("utf-16-le")),
    ("lone_surrogate_escape", "encoding", ("malformed_json", "schema_violation"),
     lambda d, c: dumps(d).replace(b'"hostile-suite"', b'"\\ud800"')),
    ("not_json", "encoding", BAD_JSON, _raw(b"\x00\x01 definitely not json")),
    ("truncated_json", "encoding", BAD_JSON, lambda d, c: dumps(d)[:-7]),
    ("trailing_garbage", "encoding", BAD_JSON, lambda d, c: dumps(d) + b" }{"),
    # --- JSON of the wrong shape -----------------------------------------------------------
    ("top_level_array", "types", SCHEMA, lambda d, c: [d]),
    ("top_level_null", "types", SCHEMA, _raw(b"null")),
    ("top_level_string", "types", SCHEMA, _raw(b'"royalflow.generation.v1"')),
    ("schema_tag_missing", "schema", SCHEMA, lambda d, c: {k: v for k, v in d.items() if k != "schema"}),
    ("schema_tag_wrong", "schema", SCHEMA, _set("schema", "royalflow.generation.v2")),
    ("extra_field", "schema", SCHEMA, _set("royalty_override", {"owner-x": 1})),
    ("extra_nested_field", "schema", SCHEMA, _set("revenue.payee", "owner-x")),
    ("event_id_bad_chars", "schema", SCHEMA, lambda d, c: {**d, "event_id": "../../etc/passwd"}),
    ("class_label_string", "types", SCHEMA, _set("conditioning.class_label", "3")),
    ("class_label_float", "types", SCHEMA, _set("conditioning.class_label", 3.0)),
    ("class_label_out_of_range", "content", CONTENT, _set("conditioning.class_label", 99)),
    ("content_missing", "schema", SCHEMA, lambda d, c: {k: v for k, v in d.items() if k != "content"}),
    ("content_inline_and_uri", "schema", SCHEMA, _set("content.uri", "file:///etc/passwd")),
    ("content_hash_mismatch", "content", CONTENT, _set("content.sha256", "0" * 64)),
    ("content_bad_base64", "content", CONTENT, _set("content.data_base64", "not*base64")),
    # --- numbers ---------------------------------------------------------------------------
    ("int_5000_digits_revenue", "bounds", BOUNDED,
     lambda d, c: dumps(d).replace(str(d["revenue"]["amount"]).encode(), b"9" * 5000, 1)),
    ("int_5000_digits_label", "bounds", BOUNDED,
     lambda d, c: dumps({**d, "conditioning": {"class_label": 0}}).replace(b'"class_label":0', b'"class_label":' + b"7" * 5000)),
    ("nan_revenue", "numbers", AMOUNT + ("malformed_json",), lambda d, c: dumps(d).replace(
        b'"amount":' + str(d["revenue"]["amount"]).encode(), b'"amount":NaN')),
    ("infinity_revenue", "numbers", AMOUNT + ("malformed_json",), lambda d, c: dumps(d).replace(
        b'"amount":' + str(d["revenue"]["amount"]).encode(), b'"amount":Infinity')),
    ("nan_class_label", "numbers", SCHEMA + ("malformed_json",),
     lambda d, c: dumps({**d, "conditioning": {"class_label": 0}}).replace(b'"class_label":0', b'"class_label":NaN')),
    ("revenue_string", "numbers", AMOUNT, _set("revenue.amount", "25000000")),
    ("revenue_float", "numbers", AMOUNT, _set("revenue.amount", 25000000.5)),
    ("revenue_bool", "numbers", AMOUNT, _set("revenue.amount", True)),
    ("revenue_negative", "numbers", AMOUNT, _set("revenue.amount", -25_000_000)),
    ("revenue_absurd", "numbers", AMOUNT, _set("revenue.amount", 10**16)),
    ("revenue_int64_overflow", "numbers", AMOUNT, _set("revenue.amount", 2**63)),
    ("asset_scale_wrong", "numbers", AMOUNT, _set("revenue.asset_scale", 2)),
    ("currency_unknown", "numbers", AMOUNT + SCHEMA, _set("revenue.currency", "ZZZ")),
    # --- size and depth --------------------------------------------------------------------
    ("deep_nesting_document", "bounds", BOUNDED, _raw(b"[" * DEEP + b"]" * DEEP)),
    ("deep_nesting_in_field", "bounds", BOUNDED,
     lambda d, c: dumps(d).replace(b'"prompt":', b'"prompt":' + b'{"a":' * 20_000 + b"1" + b"}" * 20_000 + b',"x":', 1)),
    ("huge_string_prompt", "bounds", SCHEMA, _set("conditioning.prompt", "A" * 200_000)),
    ("huge_event_id", "bounds", SCHEMA, lambda d, c: {**d, "event_id": "e" * 100_000}),
    ("oversized_payload", "bounds", ("oversized_payload",), _set("conditioning.prompt", "B" * 600_000)),
    ("many_keys", "bounds", BOUNDED, lambda d, c: {**d, **{f"k{i}": i for i in range(40_000)}}),
    # --- event times -----------------------------------------------------------------------
    ("year_1", "timestamps", TIME, _set("occurred_at", "0001-01-01T00:00:00Z")),
    ("year_1_plus_offset", "timestamps", TIME, _set("occurred_at", "0001-01-01T00:00:00+14:00")),
    ("year_9999", "timestamps", TIME, _set("occurred_at", "9999-12-31T23:59:59Z")),
    ("year_9999_minus_offset", "timestamps", TIME, _set("occurred_at", "9999-12-31T23:59:59-14:00")),
    ("just_before_2000", "timestamps", TIME, _set("occurred_at", "1999-12-31T23:59:59Z")),
    ("two_days_ahead", "timestamps", TIME, lambda d, c: {**d, "occurred_at": (c.now + timedelta(days=2)).isoformat()}),
    ("naive_timestamp", "timestamps", SCHEMA, _set("occurred_at", "2026-01-01T00:00:00")),
    ("epoch_number_timestamp", "timestamps", SCHEMA, _set("occurred_at", 1_767_225_600)),
    # --- families --------------------------------------------------------------------------
    ("unknown_family", "families", ("unknown_model_family",), _set("model_family.id", "no-such-family")),
    ("unknown_family_version", "families", ("unknown_model_family",), _set("model_family.version", "999")),
    ("family_path_traversal", "families", SCHEMA, _set("model_family.version", "../../1")),
]
for _name, _category, _expect, _mutate in TABLE:
    _register(_name, _category, _expect, _mutate)


# --- keys --------------------------------------------------------------------------------
@case("null_key", "keys", G, "schema_violation")
def _null_key(ctx: Context) -> Built:
    event = ctx.event("h-null-key")
    return Built([ctx.raw_gen(event.event_id, to_json_bytes(event), key=None).records[0]],
                 absent_generation=event.event_id)


@case("key_differs_from_event_id", "keys", G, "schema_violation")
def _other_key(ctx: Context) -> Built:
    event = ctx.event("h-key-differs-from-event-id")
    return Built(ctx.raw_gen(event.event_id, to_json_bytes(event), key=b"someone-else").records,
                 absent_generation=event.event_id)


@case("null_value", "encoding", G, "malformed_json")
def _tombstone(ctx: Context) -> Built:
    return ctx.raw_gen("h-null-value", None)


# --- content by reference ------------------------------------------------------------------
FILE = ("bad_content",)


def _file_case(name: str, uri: Callable[[Context], str]) -> None:
    @case(name, "file_uri", G, *FILE)
    def build(ctx: Context) -> Built:
        event_id = "h-" + name.replace("_", "-")
        built = ctx.raw_gen(event_id, ctx.file_event(event_id, uri(ctx)))
        built.absent_generation = event_id
        return built


_file_case("file_outside_root", lambda c: c.outside_file.as_uri())
_file_case("file_etc_passwd", lambda c: "file:///etc/passwd")
_file_case("file_dev_zero", lambda c: "file:///dev/zero")
_file_case("file_fifo_in_root", lambda c: (c.content_root / "pipe").as_uri())
_file_case("file_symlink_out", lambda c: (c.content_root / "escape").as_uri())
_file_case("file_missing_in_root", lambda c: (c.content_root / "no-such-file.png").as_uri())
_file_case("file_missing_outside", lambda c: "file:///nonexistent/royalflow/secret.png")
_file_case("file_dotdot_escape", lambda c: (c.content_root.as_uri() + "/../" + c.outside_file.name))
_file_case("file_directory", lambda c: c.content_root.as_uri())
_file_case("file_too_large_in_root", lambda c: (c.content_root / "huge.png").as_uri())
_file_case("file_hash_mismatch_in_root", lambda c: (c.content_root / "real.png").as_uri())
_file_case("uri_http_scheme", lambda c: "http://169.254.169.254/latest/meta-data/")
_file_case("file_nul_byte", lambda c: (c.content_root.as_uri() + "/real.png%00.png"))
_file_case("file_remote_host", lambda c: "file://evil.example" + str(c.content_root / "real.png"))


@case("file_uri_categorical_family", "file_uri", G, *FILE)
def _file_categorical(ctx: Context) -> Built:
    # A family that never reads content must not pay for an unread, unverifiable reference either.
    event_id = "h-file-uri-categorical-family"
    built = ctx.raw_gen(event_id, ctx.file_event(event_id, ctx.outside_file.as_uri(), family="categorical"))
    built.absent_generation = event_id
    return built
# Files the content-root tests need, created by the harness inside the root:
#   pipe (FIFO), escape -> outside_file (symlink), huge.png (sparse, over the size bound),
#   real.png (readable, its bytes differ from the event's hash).
ROOT_FILES = ("pipe", "escape", "huge.png", "real.png")
FILE_DETAIL_PEERS = ("file_outside_root", "file_missing_outside", "file_missing_in_root", "file_symlink_out")


# --- one generation id, one sale -------------------------------------------------------------
def _conflict(name: str, change: dict[str, Any], *, round: int) -> None:
    @case(name, "conflicting_sale", G, "conflicting_duplicate", round=round)
    def build(ctx: Context) -> Built:
        event_id = "h-" + name.replace("_", "-")
        first = ctx.event(event_id)
        second = ctx.event(event_id, **change)
        recs = [ctx.event_rec(second, hostile=True)]
        if round == 1:  # same agent batch: back to back, same key, same partition
            recs.insert(0, ctx.event_rec(first))
        return Built(recs, events=[first] if round == 1 else [], first_revenue=(event_id, first.revenue.amount))

    if round == 2:
        @case(name + "_first", "conflicting_sale", G, round=1)
        def build_first(ctx: Context) -> Built:
            first = ctx.event("h-" + name.replace("_", "-"))
            return Built([ctx.event_rec(first)], events=[first])


_conflict("conflict_same_agent_batch", {"revenue": 7_777_777}, round=1)
_conflict("conflict_revenue_later_batch", {"revenue": 8_888_888}, round=2)
_conflict("conflict_content_later_batch", {"content": b"other content"}, round=2)
_conflict("conflict_family_later_batch", {"version": OTHER_VERSION}, round=2)


@case("identical_redelivery", "conflicting_sale", G, round=2)
def _redelivery(ctx: Context) -> Built:
    # The first copy is this case's own round-1 control; the same bytes again are a silent no-op.
    return Built([ctx.event_rec(ctx.event("h-identical-redelivery-first"))])


@case("identical_redelivery_first", "conflicting_sale", G, round=1)
def _redelivery_first(ctx: Context) -> Built:
    event = ctx.event("h-identical-redelivery-first")
    return Built([ctx.event_rec(event)], events=[event])




# --- the edges of the event-time window, with offsets: inside settles fully, outside is refused ----
def _edge(name: str, when: Callable[[Context], str], *, inside: bool) -> None:
    @case(name, "timestamps", G, *(() if inside else TIME))
    def build(ctx: Context) -> Built:
        event = ctx.event("h-" + name.replace("_", "-"), occurred_at=when(ctx)) if inside else None
        if event is not None:  # a control: booked whole (parts AND audit record, no orphan)
            return Built([ctx.event_rec(event)], events=[event])
        event_id = "h-" + name.replace("_", "-")
        built = ctx.raw_gen(event_id, dumps({**ctx.doc(event_id), "occurred_at": when(ctx)}))
        built.absent_generation = event_id
        return built


_PLUS_14 = timezone(timedelta(hours=14))
_edge("edge_2000_minus_offset_settles", lambda c: "2000-01-01T00:00:00-14:00", inside=True)
_edge("edge_2000_plus_offset", lambda c: "2000-01-01T00:00:00+14:00", inside=False)
_edge("edge_tomorrow_with_offset_settles",
      lambda c: (c.now + timedelta(hours=23)).astimezone(_PLUS_14).isoformat(), inside=True)
_edge("edge_past_tomorrow_with_offset",
      lambda c: (c.now + timedelta(hours=25)).astimezone(timezone(timedelta(hours=-14))).isoformat(), inside=False)
