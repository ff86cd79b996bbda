"""The simulated world: accounts, campaigns, the clock range, models and seeded random streams."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from detector.lab.simulate import net
from detector.lab.simulate.block import I64, Obj
from detector.lab.simulate.clock import DAY_MS, HOUR_MS
from detector.lab.simulate.net import Client
from detector.lab.simulate.params import SimParams
from detector.lab.simulate.prompts import PromptBank

_MAX_OUT = (8192, 16384, 32000)
_NEW_MAX_OUT = 64000
_BASE_MIX = (0.35, 0.35, 0.30)


@dataclass
class Account:
    """One account as the gateway's account service knows it, plus its label."""

    account_id: str
    persona: str
    created_ms: int
    org_id: str | None
    api_keys: list[str]
    payment: str | None
    country: str | None
    tier: str | None
    verified: bool | None
    reseller_id: str | None
    ips: list[str]
    client: Client
    campaign_id: str | None = None
    campaign_type: str | None = None


@dataclass
class Campaign:
    """A labelled campaign: one family, one start time, its member accounts."""

    campaign_id: str
    family: str
    campaign_type: str
    start_ms: int
    members: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Router:
    """A legitimate router (an API reseller tenant): its customers' requests reach the gateway as
    sub-accounts under the router's org and card, from its egress addresses, with its client build."""

    reseller_id: str
    org_id: str
    payment: str
    egress: list[str]
    client: Client
    created_ms: int


#: Countries the residential proxy network has exit devices in, by weight.
_EXIT_COUNTRIES: dict[str, float] = {"US": 0.35, "GB": 0.1, "DE": 0.1, "BR": 0.1, "IN": 0.1, "FR": 0.05}
_EXIT_COUNTRIES |= {"ES": 0.05, "MX": 0.05, "IT": 0.05, "JP": 0.05}


class World:
    """Shared state of one simulation run; generators add accounts and read the clock and models."""

    def __init__(self, seed: int, params: SimParams, bank: PromptBank, days: float, scale: float) -> None:
        self.seed = seed % (2**63)
        self.params = params
        self.bank = bank
        self.scale = scale
        self.start_ms = int(params.start.timestamp() * 1000)
        self.end_ms = self.start_ms + round(days * 24 * HOUR_MS)
        self.launch_ms = self.start_ms + int(params.launch_fraction * (self.end_ms - self.start_ms))
        self.accounts: list[Account] = []
        self.campaigns: list[Campaign] = []
        self._ids: set[str] = set()
        #: System prompt hash -> its text (the gateway ships hashes only; never written out).
        self.system_prompts: dict[str, str] = {}
        self._router: Router | None = None
        self._exits: list[str] | None = None
        #: Exit address -> the country of the home connection behind it.
        self.exit_country: dict[str, str] = {}
        self._id_rng = self.rng("ids")
        self.base_models = list(params.models)
        self.max_out: dict[str, int] = {m: _MAX_OUT[min(i, 2)] for i, m in enumerate(self.base_models)}
        self.max_out[params.new_model_id] = _NEW_MAX_OUT

    @property
    def days(self) -> float:
        """Length of the run in days."""
        return (self.end_ms - self.start_ms) / (24 * HOUR_MS)

    def rng(self, *keys: str) -> np.random.Generator:
        """An independent random stream for one named component (stable under changes elsewhere)."""
        words = [self.seed & 0xFFFFFFFF, self.seed >> 32] + [zlib.crc32(k.encode()) for k in keys]
        return np.random.default_rng(np.random.SeedSequence(words))

    def scaled(self, count: int) -> int:
        """An account count times ``scale`` (at least 1 when the count is positive)."""
        return 0 if count <= 0 else max(1, round(count * self.scale))

    def new_id(self, prefix: str, nhex: int = 10) -> str:
        """A fresh random-looking identifier, unique within the run."""
        while True:
            value = "".join(f"{int(x):x}" for x in self._id_rng.integers(0, 16, nhex))
            ident = f"{prefix}_{value}"
            if ident not in self._ids:
                self._ids.add(ident)
                return ident

    def add(self, account: Account) -> int:
        """Register an account; returns its index (the ``acct`` column of blocks)."""
        self.accounts.append(account)
        return len(self.accounts) - 1

    def new_campaign(self, family: str, campaign_type: str, start_ms: int) -> Campaign:
        """Register a campaign."""
        c = Campaign(self.new_id("cmp", 8), family, campaign_type, start_ms)
        self.campaigns.append(c)
        return c

    def models(
        self,
        rng: np.random.Generator,
        ts: I64,
        weights: tuple[float, ...] | None = None,
        adopt: float = 0.0,
        adopt_hours: float = 48.0,
    ) -> Obj:
        """A model per request: ``weights`` over the base models, and after launch a share of the new
        model rising linearly to ``adopt`` over ``adopt_hours``."""
        w = np.asarray(weights if weights is not None else _BASE_MIX, dtype=np.float64)[
            : len(self.base_models)
        ]
        base = np.asarray(self.base_models, dtype=np.object_)[
            rng.choice(w.shape[0], size=ts.shape[0], p=w / w.sum())
        ]
        share = adopt * np.clip((ts - self.launch_ms) / (adopt_hours * HOUR_MS), 0.0, 1.0)
        share[ts < self.launch_ms] = 0.0
        out: Obj = np.where(rng.random(ts.shape[0]) < share, self.params.new_model_id, base).astype(
            np.object_
        )
        return out

    def cap(self, model: Obj, wanted: I64) -> I64:
        """``max_tokens`` limited by each model's maximum output (``-1``, null, stays null)."""
        limit = np.array([self.max_out.get(str(m), 8192) for m in model], dtype=np.int64)
        return np.where(wanted < 0, wanted, np.minimum(wanted, limit))

    def model_max(self, model: Obj) -> I64:
        """Each request's model's maximum output tokens."""
        return np.array([self.max_out.get(str(m), 8192) for m in model], dtype=np.int64)

    def router(self) -> Router:
        """The world's one legitimate router, created on first use (its own random stream)."""
        if self._router is None:
            rng = self.rng("router")
            self._router = Router(
                self.new_id("rs", 6),
                self.new_id("org", 8),
                self.new_id("pf", 12),
                net.proxy_pool(rng, 24, ("gcp", "aws"), 0.0),
                net.custom_client(rng, "relaygate/1.8.2", None, "/v1/chat/completions"),
                self.start_ms - int(rng.uniform(400, 900) * DAY_MS),
            )
        return self._router

    def proxy_exits(self) -> list[str]:
        """The residential proxy network's exit addresses (home connections), created on first use."""
        if self._exits is None:
            rng = self.rng("proxy_exits")
            names = list(_EXIT_COUNTRIES)
            p = np.array([_EXIT_COUNTRIES[c] for c in names])
            where = rng.choice(len(names), size=self.params.proxy_exits, p=p / p.sum())
            for i in where:
                self.exit_country[net.residential_ip(rng, names[i], self.params.ipv6_fraction)] = names[i]
            self._exits = sorted(self.exit_country)
        return self._exits
