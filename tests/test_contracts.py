"""The pydantic contract models against the shared JSON Schemas and example records.

* every good example is accepted by ``GatewayEvent`` (and by the JSON Schema), every bad one is rejected
  by both, with a reason that names the offending field;
* a generic, recursive drift check: the JSON Schemas and the models' ``model_json_schema()`` must agree on
  properties at every level, required fields, leaf types and nullability, enums/consts, formats and
  numeric/length bounds; a field added to one side only fails;
* alerts built with ``Alert(...)`` and dumped with ``to_json_dict()`` are valid per ``alert.schema.json``.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import pytest
from pydantic import BaseModel, ValidationError

from detector.contracts import ALERT_EXTENSIONS, Alert, Client, GatewayEvent, Reason
from detector.schema import EVENT_SCHEMA, FIELD_PATHS, RAW_SCHEMA

pytestmark = pytest.mark.shared

# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

#: The field each bad example is about (dotted path), or the non-field problem for non-objects.
EXPECTED_BAD: dict[str, str] = {
    "bad_ip.json": "client.ip",
    "bad_simhash.json": "prompt.simhash",
    "empty_request_id.json": "request_id",
    "missing_account.json": "account_id",
    "naive_timestamp.json": "ts",
    "negative_tokens.json": "usage.input_tokens",
    "string_tokens.json": "usage.input_tokens",
    "wrong_version.json": "schema_version",
    "not_json.txt": "<not json>",
    "not_object.json": "<not an object>",
}

_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def format_checker() -> jsonschema.FormatChecker:
    """The default checker plus a strict RFC 3339 ``date-time`` (jsonschema only checks it when the
    optional ``rfc3339-validator`` is installed, so without this a naive timestamp would pass)."""
    checker = jsonschema.FormatChecker()

    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not _RFC3339.match(value):
            raise ValueError(f"not RFC 3339 with an offset: {value!r}")
        datetime.fromisoformat(value.upper())  # calendar check (month 13, Feb 30 ...)
        return True

    checker.checks("date-time", raises=ValueError)(_date_time)
    return checker


def load_schema(contracts_dir: Path, name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((contracts_dir / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def validator(contracts_dir: Path, name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(contracts_dir, name), format_checker=format_checker())


def examples(contracts_dir: Path, kind: str) -> list[Path]:
    files = sorted(p for p in (contracts_dir / "examples" / kind).iterdir() if p.is_file())
    assert files, f"no {kind} examples under {contracts_dir}"
    return files


def model_rejection(raw: bytes) -> tuple[str, list[str], str]:
    """(first error type, dotted locations of all errors, first message) for a record the model rejects."""
    with pytest.raises(ValidationError) as info:
        GatewayEvent.model_validate_json(raw)
    errors = info.value.errors()
    locs = [".".join(str(p) for p in e["loc"]) for e in errors]
    return errors[0]["type"], locs, str(errors[0]["msg"])


# --------------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------------


def test_good_examples_are_accepted_by_model_and_schema(contracts_dir: Path) -> None:
    v = validator(contracts_dir, "gateway-event.schema.json")
    for path in examples(contracts_dir, "good"):
        raw = path.read_bytes()
        event = GatewayEvent.model_validate_json(raw)
        assert event.ts.tzinfo is not None, path.name
        assert GatewayEvent.model_validate(json.loads(raw)) == event, path.name  # python and JSON modes agree
        errors = [e.message for e in v.iter_errors(json.loads(raw))]
        assert not errors, f"{path.name}: {errors}"


def test_good_examples_parse_to_expected_values(contracts_dir: Path) -> None:
    good = {p.name: GatewayEvent.model_validate_json(p.read_bytes()) for p in examples(contracts_dir, "good")}
    full, minimal, text_free = good["full.json"], good["minimal.json"], good["text_free.json"]
    assert full.ts == datetime(2026, 2, 10, 12, 34, 56, 789000, tzinfo=UTC)
    assert full.account is not None and full.account.tier == "startup"
    assert minimal.account is None and minimal.prompt is None and minimal.client.ip == "2001:db8::1"
    assert text_free.ts == datetime(2026, 2, 10, 11, 35, 1, 500000, tzinfo=UTC)
    assert text_free.latency_ms == 3.0  # JSON integer is a valid "number"
    assert text_free.prompt is not None and text_free.prompt.simhash == "a3f09c1e44b2d870"


def test_bad_examples_are_rejected_naming_the_field(contracts_dir: Path) -> None:
    names = {p.name for p in examples(contracts_dir, "bad")}
    assert set(EXPECTED_BAD) <= names, f"bad examples renamed or removed: {set(EXPECTED_BAD) - names}"
    for path in examples(contracts_dir, "bad"):
        kind, locs, msg = model_rejection(path.read_bytes())
        expected = EXPECTED_BAD.get(path.name)
        if expected == "<not json>":
            assert kind == "json_invalid" and locs == [""], (path.name, kind, locs)
            assert "json" in msg.lower(), msg
        elif expected == "<not an object>":
            assert kind in ("model_type", "dict_type") and locs == [""], (path.name, kind, locs)
            assert "dictionary" in msg or "object" in msg, msg
        elif expected is not None:
            # each bad example has exactly one fault, and the reason names that field
            assert locs == [expected], (path.name, locs)
        else:  # a new bad example: at least it must name a field
            assert locs and all(locs), (path.name, locs)


def test_bad_examples_are_rejected_by_the_json_schema_too(contracts_dir: Path) -> None:
    v = validator(contracts_dir, "gateway-event.schema.json")
    for path in examples(contracts_dir, "bad"):
        try:
            obj = json.loads(path.read_bytes())
        except json.JSONDecodeError:
            assert EXPECTED_BAD.get(path.name) == "<not json>", path.name
            continue
        errors = list(v.iter_errors(obj))
        assert errors, f"{path.name} is valid per gateway-event.schema.json"
        expected = EXPECTED_BAD.get(path.name)
        if expected and not expected.startswith("<"):
            assert expected in {_error_field(e) for e in errors}, (path.name, [e.message for e in errors])


def _error_field(error: jsonschema.ValidationError) -> str:
    """The dotted field a JSON Schema error is about (a "required" error names the missing property)."""
    where = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        if missing:
            where.append(missing.group(1))
    return ".".join(where)


def test_unknown_fields_are_ignored(contracts_dir: Path) -> None:
    obj = json.loads((contracts_dir / "examples" / "good" / "minimal.json").read_bytes())
    obj["x_new_gateway_field"] = {"nested": [1, 2, 3]}
    obj["client"]["x_asn"] = 64500
    GatewayEvent.model_validate(obj)
    assert not list(validator(contracts_dir, "gateway-event.schema.json").iter_errors(obj))


@pytest.mark.parametrize(
    "text",
    [
        "1.2.3.4",
        "0.0.0.0",
        "255.255.255.255",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3",
        "1.2.3.4 ",
        "::",
        "::1",
        "1::",
        "2001:db8::1",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:9",
        "::ffff:1.2.3.4",
        "1:2::3:1.2.3.4",
        "fe80::1%eth0",
        "12345::",
        "1::2::3",
        "abcd",
        "",
        "\u0663.2.3.4",
    ],
)
def test_model_ip_check_matches_contract_formats(text: str) -> None:
    """``Client.ip`` is validated in code, not by a JSON Schema keyword: it must accept exactly what the
    contract's ``anyOf: [{format: ipv4}, {format: ipv6}]`` accepts."""
    checker = format_checker()
    contract_ok = checker.conforms(text, "ipv4") or checker.conforms(text, "ipv6")
    try:
        Client(ip=text)
        model_ok = True
    except ValidationError:
        model_ok = False
    assert model_ok == contract_ok, (text, model_ok, contract_ok)


# --------------------------------------------------------------------------------------------------
# Drift: JSON Schema vs pydantic, compared as normalized trees
# --------------------------------------------------------------------------------------------------

_BOUNDS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
)
#: Keywords that carry no constraint we compare (documentation and defaults).
_IGNORED = {"title", "description", "default", "examples", "$schema", "$id", "$defs", "additionalProperties"}
_KNOWN = {
    "type",
    "enum",
    "const",
    "format",
    "properties",
    "required",
    "items",
    "anyOf",
    "oneOf",
    "$ref",
    *_BOUNDS,
    *_IGNORED,
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(f"unexpected enum/const value {value!r}")


def _types_of(node: dict[str, Any]) -> set[str]:
    t = node.get("type", ())
    return {t} if isinstance(t, str) else set(t)


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local $refs are supported, got {ref}"
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def normalize(node: dict[str, Any], root: dict[str, Any], path: str = "$") -> dict[str, Any]:
    """A comparable summary of a schema node: types (with "null" for nullable), enum/const as
    (type, value) pairs, formats, bounds, and recursively properties/required/items.

    ``anyOf``/``oneOf`` branches are merged (pydantic writes ``X | None`` as ``anyOf: [X, {type: null}]``,
    the contract as ``type: [X, "null"]``); branches that only name a format (``anyOf: [{format: ipv4},
    {format: ipv6}]``) become a set of accepted formats.
    """
    node = _resolve(node, root)
    unknown = set(node) - _KNOWN
    assert not unknown, f"{path}: keywords this drift check does not compare: {sorted(unknown)}"
    parts = [{k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}]
    formats: set[str] = set()
    for branch in [_resolve(b, root) for b in node.get("anyOf", []) + node.get("oneOf", [])]:
        if set(branch) == {"format"}:
            formats.add(branch["format"])
        else:
            parts.append(branch)

    out: dict[str, Any] = {"types": set(), "enum": None, "formats": formats, "bounds": {}}
    props: dict[str, dict[str, Any]] | None = None
    required: set[str] = set()
    items: dict[str, Any] | None = None
    for part in parts:
        unknown = set(part) - _KNOWN
        assert not unknown, f"{path}: keywords this drift check does not compare: {sorted(unknown)}"
        out["types"] |= _types_of(part)
        values: list[Any] | None = None
        if "const" in part:
            values = [part["const"]]
        if "enum" in part:
            values = list(part["enum"])
        if values is not None:
            if "type" not in part:
                out["types"] |= {_json_type(v) for v in values}
            out["enum"] = (out["enum"] or set()) | {(_json_type(v), v) for v in values}
        if "format" in part:
            out["formats"].add(part["format"])
        for key in _BOUNDS:
            if key in part:
                assert out["bounds"].get(key, part[key]) == part[key], f"{path}: conflicting {key}"
                out["bounds"][key] = part[key]
        if "properties" in part or "object" in _types_of(part):
            props = props or {}
            for name, sub in part.get("properties", {}).items():
                props[name] = normalize(sub, root, f"{path}.{name}")
            required |= set(part.get("required", ()))
        if "items" in part:
            items = normalize(part["items"], root, f"{path}[]")
    if out["enum"] is not None and "null" in out["types"]:
        out["enum"].add(("null", None))  # a nullable enum accepts null either way it is spelled
    if "integer" in out["types"] and "number" in out["types"]:
        out["types"].discard("integer")  # number already includes integers
    out["properties"] = props
    out["required"] = required
    out["items"] = items
    return out


def compare(contract: dict[str, Any], model: dict[str, Any], path: str = "$") -> list[str]:
    """Every difference between two normalized trees, as readable lines naming the path."""
    diffs: list[str] = []
    for key in ("types", "enum", "formats", "bounds"):
        if contract[key] != model[key]:
            diffs.append(f"{path}: {key} differ: contract={contract[key]!r} model={model[key]!r}")
    cp, mp = contract["properties"], model["properties"]
    if (cp is None) != (mp is None):
        diffs.append(f"{path}: object in one side only (contract={cp is not None}, model={mp is not None})")
    elif cp is not None and mp is not None:
        for name in sorted(set(cp) - set(mp)):
            diffs.append(f"{path}.{name}: in the contract only")
        for name in sorted(set(mp) - set(cp)):
            diffs.append(f"{path}.{name}: in the model only")
        if contract["required"] != model["required"]:
            diffs.append(
                f"{path}: required differ: contract={sorted(contract['required'])} "
                f"model={sorted(model['required'])}"
            )
        for name in sorted(set(cp) & set(mp)):
            diffs += compare(cp[name], mp[name], f"{path}.{name}")
    ci, mi = contract["items"], model["items"]
    if (ci is None) != (mi is None):
        diffs.append(f"{path}[]: items in one side only")
    elif ci is not None and mi is not None:
        diffs += compare(ci, mi, f"{path}[]")
    return diffs


def model_schema(model: type[BaseModel], *, output: bool = False) -> dict[str, Any]:
    """``model_json_schema()``; for an output model, a field with a non-null default is always written, so
    for the reader it is required (the contract's point of view)."""
    schema = copy.deepcopy(model.model_json_schema(mode="serialization" if output else "validation"))
    if output:
        for obj in [schema, *schema.get("$defs", {}).values()]:
            for name, sub in obj.get("properties", {}).items():
                if sub.get("default") is not None and name not in obj.get("required", []):
                    obj.setdefault("required", []).append(name)
    return schema


#: Formats a model enforces with a validator rather than a schema keyword (checked behaviourally by
#: ``test_model_ip_check_matches_contract_formats``).
VALIDATOR_FORMATS: dict[tuple[type[BaseModel], str], set[str]] = {
    (GatewayEvent, "client.ip"): {"ipv4", "ipv6"}
}


def normalized_model(model: type[BaseModel], *, output: bool = False) -> dict[str, Any]:
    schema = model_schema(model, output=output)
    tree = normalize(schema, schema)
    for (owner, dotted), formats in VALIDATOR_FORMATS.items():
        if issubclass(model, owner):
            node = tree
            for part in dotted.split("."):
                node = node["properties"][part]
            node["formats"] |= formats
    return tree


def test_gateway_event_model_matches_the_json_schema(contracts_dir: Path) -> None:
    contract = load_schema(contracts_dir, "gateway-event.schema.json")
    diffs = compare(normalize(contract, contract), normalized_model(GatewayEvent))
    assert not diffs, "gateway-event contract drift:\n" + "\n".join(diffs)


def test_alert_model_matches_the_json_schema(contracts_dir: Path) -> None:
    """The model is the contract plus the declared optional extensions, which the contract allows."""
    contract = load_schema(contracts_dir, "alert.schema.json")
    diffs = compare(normalize(contract, contract), normalized_model(Alert, output=True))
    extensions = {f"{path}: in the model only" for path in ALERT_EXTENSIONS}
    assert extensions <= set(diffs), "a declared extension is not in the model (or now in the contract)"
    drift = [d for d in diffs if d not in extensions]
    assert not drift, "alert contract drift:\n" + "\n".join(drift)
    for path in ALERT_EXTENSIONS:
        node = contract
        for step in path.removeprefix("$.").split(".")[:-1]:
            node = node["properties"][step.removesuffix("[]")]
            node = node["items"] if step.endswith("[]") else node
        assert node.get("additionalProperties", True) is not False, path


def leaves_of(tree: dict[str, Any], path: str = "") -> dict[str, dict[str, Any]]:
    """Dotted path -> normalized node for every leaf (a node without declared properties)."""
    if not tree["properties"]:
        return {path: tree}
    out: dict[str, dict[str, Any]] = {}
    for name, sub in tree["properties"].items():
        out |= leaves_of(sub, f"{path}.{name}" if path else name)
    return out


def test_normalized_trees_cover_every_leaf(contracts_dir: Path) -> None:
    """Guard against a vacuous comparison: leaves have types and the known constraints were seen."""
    contract = load_schema(contracts_dir, "gateway-event.schema.json")
    tree = normalize(contract, contract)
    leaves = leaves_of(tree)
    assert len(leaves) > 30
    assert all(n["types"] for n in leaves.values()), [p for p, n in leaves.items() if not n["types"]]
    assert leaves["schema_version"]["enum"] == {("integer", 1)}
    assert ("null", None) in leaves["account.tier"]["enum"] and len(leaves["account.tier"]["enum"]) == 8
    assert leaves["prompt.simhash"]["bounds"] == {"pattern": "^[0-9a-f]{16}$"}
    assert leaves["params.top_p"]["bounds"] == {"minimum": 0, "maximum": 1}
    assert leaves["client.ip"]["formats"] == {"ipv4", "ipv6"}
    assert leaves["status"]["types"] == {"integer", "null"}
    assert tree["required"] == {
        "schema_version",
        "request_id",
        "ts",
        "account_id",
        "model",
        "client",
        "usage",
    }


#: JSON type (and format) of a contract leaf -> the polars dtype the decoder reads it as.
_POLARS_FOR = {"string": pl.String, "integer": pl.Int64, "number": pl.Float64, "boolean": pl.Boolean}


def test_decoder_schema_matches_the_contract(contracts_dir: Path) -> None:
    """``detector.schema.RAW_SCHEMA`` (what the column-wise decoder reads) has exactly the contract's
    fields, nested the same way, each with the dtype of its JSON type; ``EVENT_SCHEMA`` flattens all."""
    contract = load_schema(contracts_dir, "gateway-event.schema.json")
    tree = normalize(contract, contract)
    assert set(RAW_SCHEMA.names()) == set(tree["properties"])
    raw_leaves: dict[str, pl.DataType] = {}
    for name, dtype in RAW_SCHEMA.items():
        if isinstance(dtype, pl.Struct):
            assert tree["properties"][name]["properties"], f"{name} is a struct but not an object"
            raw_leaves |= {f"{name}.{f.name}": f.dtype for f in dtype.fields}
        else:
            raw_leaves[name] = dtype
    leaves = leaves_of(tree)
    assert set(raw_leaves) == set(leaves)
    for path, node in leaves.items():
        (json_type,) = node["types"] - {"null"}
        assert raw_leaves[path] == _POLARS_FOR[json_type], (path, raw_leaves[path], json_type)
    assert set(FIELD_PATHS.values()) == set(leaves)
    assert len(EVENT_SCHEMA) == len(leaves)
    dt = [FIELD_PATHS[c] for c, t in EVENT_SCHEMA.items() if isinstance(t, pl.Datetime)]
    assert sorted(dt) == sorted(p for p, n in leaves.items() if "date-time" in n["formats"])


def _mutations() -> list[tuple[str, Any]]:
    """(what, mutate(schema)) pairs: each must be reported as drift."""

    def add_nested(s: dict[str, Any]) -> None:
        s["properties"]["usage"]["properties"]["cached_tokens"] = {"type": ["integer", "null"], "minimum": 0}

    def add_top(s: dict[str, Any]) -> None:
        s["properties"]["region"] = {"type": ["string", "null"]}

    def drop_required(s: dict[str, Any]) -> None:
        s["properties"]["client"]["required"] = []

    def widen(s: dict[str, Any]) -> None:
        s["properties"]["model"]["maxLength"] = 256

    def not_nullable(s: dict[str, Any]) -> None:
        s["properties"]["params"]["properties"]["stream"]["type"] = "boolean"

    def enum(s: dict[str, Any]) -> None:
        s["properties"]["account"]["properties"]["tier"]["enum"].insert(0, "pro")

    def version(s: dict[str, Any]) -> None:
        s["properties"]["schema_version"]["const"] = 2

    def leaf_type(s: dict[str, Any]) -> None:
        s["properties"]["latency_ms"]["type"] = ["integer", "null"]

    def pattern(s: dict[str, Any]) -> None:
        s["properties"]["prompt"]["properties"]["simhash"]["pattern"] = "^[0-9a-f]{32}$"

    def drop_prop(s: dict[str, Any]) -> None:
        del s["properties"]["response"]["properties"]["refusal"]

    return [
        (f.__name__, f)
        for f in (
            add_nested,
            add_top,
            drop_required,
            widen,
            not_nullable,
            enum,
            version,
            leaf_type,
            pattern,
            drop_prop,
        )
    ]


def test_drift_check_catches_one_sided_changes(contracts_dir: Path) -> None:
    contract = load_schema(contracts_dir, "gateway-event.schema.json")
    model = normalized_model(GatewayEvent)
    assert not compare(normalize(contract, contract), model)
    for what, mutate in _mutations():
        changed = copy.deepcopy(contract)
        mutate(changed)
        assert compare(normalize(changed, changed), model), f"drift not detected: {what}"

    class Extended(GatewayEvent):
        region: str | None = None

    diffs = compare(normalize(contract, contract), normalized_model(Extended))
    assert diffs == ["$.region: in the model only"], diffs


# --------------------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------------------
T0 = datetime(2026, 2, 10, 12, 0, 0, tzinfo=UTC)


def _alerts() -> list[Alert]:
    return [
        Alert(
            alert_id="a-0001",
            revision=1,
            kind="account",
            subject="acct_1001",
            account_ids=["acct_1001"],
            severity="high",
            score=0.91,
            campaign_type="chain_of_thought",
            first_event_ts=T0,
            detected_event_ts=T0 + timedelta(minutes=42, microseconds=123),
            reasons=[
                Reason(
                    source="rule",
                    name="cot_harvest",
                    detail="share_cot=0.97 >= 0.8",
                    title="Chain-of-thought harvest",
                    output="97% of 1,200 requests ask for step-by-step reasoning",
                    severity="high",
                )
            ],
            evidence={"requests": 1200, "share_cot": 0.97, "shared": {"payment_fingerprints": ["pf_1"]}},
            output="97% of 1,200 requests ask for step-by-step reasoning",
        ),
        Alert(
            alert_id="c-77",
            revision=3,
            kind="cluster",
            subject="cluster:9f2c",
            account_ids=["a", "b", "c"],
            severity="critical",
            score=1.0,
            first_event_ts=T0,
            detected_event_ts=datetime(2026, 2, 10, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            emitted_at=datetime(2026, 2, 11, 1, 2, 3, 456789, tzinfo=UTC),
            reasons=[
                Reason(source="model", name="hydra-gbm@3", score=0.88),
                Reason(source="rule", name="shared_payment", score=None, detail=None),
            ],
        ),
        Alert(
            alert_id="x",
            revision=1,
            kind="account",
            subject="s",
            account_ids=["s"],
            severity="low",
            score=0.0,
            first_event_ts=T0,
            detected_event_ts=T0,
            reasons=[Reason(source="rule", name="r")],
            evidence=None,
        ),
    ]


def test_alerts_validate_against_the_alert_schema(contracts_dir: Path) -> None:
    v = validator(contracts_dir, "alert.schema.json")
    for alert in _alerts():
        out = alert.to_json_dict()
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(out)]
        assert not errors, (alert.alert_id, errors)
        assert json.loads(json.dumps(out)) == out  # plain JSON types only
        assert out["schema_version"] == 1
        assert "emitted_at" in out if alert.emitted_at else "emitted_at" not in out
        assert out["first_event_ts"].endswith("Z")
        assert Alert.model_validate(out) == alert  # round-trips


def test_alert_timestamps_are_rfc3339_in_json(contracts_dir: Path) -> None:
    out = _alerts()[1].to_json_dict()
    assert out["emitted_at"] == "2026-02-11T01:02:03.456789Z"
    assert out["first_event_ts"] == "2026-02-10T12:00:00Z"
    assert datetime.fromisoformat(out["detected_event_ts"]) == datetime(2026, 2, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"severity": "urgent"}, "severity"),
        ({"kind": "org"}, "kind"),
        ({"score": 1.5}, "score"),
        ({"score": -0.1}, "score"),
        ({"revision": 0}, "revision"),
        ({"alert_id": ""}, "alert_id"),
        ({"account_ids": []}, "account_ids"),
        ({"reasons": []}, "reasons"),
        ({"first_event_ts": datetime(2026, 2, 10, 12, 0)}, "first_event_ts"),  # naive
        ({"schema_version": 2}, "schema_version"),
    ],
)
def test_alert_model_refuses_what_the_schema_refuses(
    contracts_dir: Path, change: dict[str, Any], field: str
) -> None:
    base = _alerts()[0].model_dump()
    with pytest.raises(ValidationError) as info:
        Alert.model_validate({**base, **change})
    assert field in {str(e["loc"][0]) for e in info.value.errors()}
    # and the JSON Schema refuses the same document
    doc = {
        **_alerts()[0].to_json_dict(),
        **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in change.items()},
    }
    assert list(validator(contracts_dir, "alert.schema.json").iter_errors(doc)), change


def test_alert_model_forbids_unknown_fields() -> None:
    """Stricter than the contract on purpose: a typo in the detector's own code must not pass silently."""
    with pytest.raises(ValidationError, match="unexpected"):
        Alert.model_validate({**_alerts()[0].model_dump(), "unexpected": 1})


def test_reason_source_is_rule_or_model() -> None:
    with pytest.raises(ValidationError):
        Reason(source="heuristic", name="x")  # type: ignore[arg-type]


def test_ip_validator_is_not_vacuous() -> None:
    assert Client(ip="::ffff:1.2.3.4").ip == "::ffff:1.2.3.4"  # kept as sent, not normalized
    with pytest.raises(ValidationError, match="ip"):
        Client(ip="999.1.2.3")
