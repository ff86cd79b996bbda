"""STIX 2.1 bundles of campaign indicators: export confirmed clusters' shared artefacts, import a
partner's indicators as a ``PartnerIndex``.

One indicator per confirmed cluster alert (an analyst's ``confirm`` disposition). Its pattern ORs the
keyed hashes (``artefact_hmac``) of the linkage values most of the cluster shares: payment and client
fingerprints, system-prompt and template-skeleton hashes, network prefixes, resellers. The same hashes
are listed in ``x_artefact_hmacs`` (family and hash) for matching; the cluster's sign-up spread,
size and campaign type describe it. No raw value, IP address or account id is written: ids are derived
from keyed hashes too. Every bundle is checked with ``stix2-validator`` before it is written or read.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import stix2
from stix2validator import ValidationOptions, validate_string

from detector.errors import DetectorError
from detector.intel.hashing import SHARED_FAMILIES, PartnerIndex, artefact_hmac

_SHARED = re.compile(r"^(?P<key>.+) \((?P<n>\d+) accounts\)$")
_NS = uuid.UUID("6f1d3c7e-8a52-4b7e-9a0e-2f0c4f6d9b11")  # this tool's namespace for uuid5 ids
TLP = {"clear": stix2.TLP_WHITE, "green": stix2.TLP_GREEN, "amber": stix2.TLP_AMBER, "red": stix2.TLP_RED}
#: Only values at least this many of the cluster's accounts share become indicators (a value one
#: account used is not a campaign artefact).
MIN_SHARING_ACCOUNTS = 2


class IntelError(DetectorError, ValueError):
    """A bundle that does not validate, or one this tool cannot read."""


def _validate(text: str) -> None:
    result = validate_string(text, ValidationOptions(version="2.1", strict=False))
    if not result.is_valid:
        problems = [str(e.message) for obj in result.object_results for e in obj.errors]
        raise IntelError("STIX bundle does not validate: " + "; ".join(problems[:5]))


def export_bundle(
    alerts_path: Path,
    confirmed: set[str],
    key: bytes,
    provider: str,
    tlp: str = "amber",
    now: datetime | None = None,
) -> tuple[str, int]:
    """(bundle JSON text, indicators) for the confirmed cluster alerts in ``alerts_path``."""
    latest: dict[str, dict[str, Any]] = {}
    for line in alerts_path.read_bytes().splitlines():
        if line.strip():
            a = orjson.loads(line)
            newer = a["revision"] >= latest.get(a["alert_id"], {}).get("revision", 0)
            if a["alert_id"] in confirmed and a["kind"] == "cluster" and newer:
                latest[a["alert_id"]] = a
    now = now or datetime.now(UTC)
    identity = stix2.Identity(
        id=f"identity--{uuid.uuid5(_NS, provider)}", name=provider, identity_class="organization"
    )
    marking = TLP[tlp]
    objects: list[Any] = [identity]
    for aid, a in sorted(latest.items()):
        ev = a.get("evidence") or {}
        artefacts = []
        for family in SHARED_FAMILIES:
            for text in (ev.get("shared") or {}).get(family, []):
                m = _SHARED.match(str(text))
                if m and int(m.group("n")) >= MIN_SHARING_ACCOUNTS:
                    artefacts.append({"family": family, "hmac": artefact_hmac(key, family, m.group("key"))})
        if not artefacts:
            continue
        pattern = " OR ".join(f"[x-llm-linkage-artefact:hmac = '{x['hmac']}']" for x in artefacts)
        tag = artefact_hmac(key, "alert", aid)
        objects.append(
            stix2.Indicator(
                id=f"indicator--{uuid.uuid5(_NS, tag)}",
                created_by_ref=identity.id,
                created=now,
                modified=now,
                name=f"LLM distillation campaign cluster ({a.get('campaign_type') or 'unknown type'})",
                description=(
                    f"{len(a['account_ids'])} linked accounts, severity {a['severity']}, confirmed by an "
                    f"analyst. Values are HMAC-SHA256 under the community key of 'family:value'."
                ),
                indicator_types=["malicious-activity"],
                pattern=pattern,
                pattern_type="stix",
                valid_from=a["first_event_ts"],
                confidence=round(100 * float(a.get("score") or 0.0)),
                labels=["llm-distillation", str(a.get("campaign_type") or "unknown")],
                object_marking_refs=[marking],
                allow_custom=True,
                x_artefact_hmacs=artefacts,
                x_campaign_type=a.get("campaign_type"),
                x_cluster_accounts=len(a["account_ids"]),
                x_signup_spread_hours=ev.get("signup_spread_hours"),
            )
        )
    bundle = stix2.Bundle(objects=[*objects, marking], allow_custom=True)
    text = bundle.serialize(pretty=True)
    _validate(text)
    return text, len(objects) - 1


def load_partner(paths: list[Path], key: bytes) -> PartnerIndex:
    """A ``PartnerIndex`` from partner bundles (each validated); indicator ids become ``pi-<hex>``."""
    index = PartnerIndex(key)
    for path in paths:
        text = path.read_text(encoding="utf-8")
        _validate(text)
        for obj in json.loads(text).get("objects", []):
            if obj.get("type") != "indicator" or obj.get("revoked"):
                continue
            ref = "pi-" + obj["id"].split("--", 1)[1].replace("-", "")[:16]
            for art in obj.get("x_artefact_hmacs") or []:
                if art.get("family") in SHARED_FAMILIES and re.fullmatch(
                    r"[0-9a-f]{64}", str(art.get("hmac"))
                ):
                    index.hashes[art["hmac"]] = ref
    return index
