"""What a checkout reads from the ledger, as plain tuples (``Ledger.checkout_chain``): building ORM
rows for a 40-version lineage cost more than applying its deltas."""
from __future__ import annotations

from typing import NamedTuple


class ChainDelta(NamedTuple):
    tensor: str                        # state-dict name, or "@<method>" for a state delta
    kind: str                          # low_rank / dense / sparse / state (keyframes: ChainStep.keyframe)
    digest: str                        # the artifact holding its factors


class ChainStep(NamedTuple):
    version_id: int
    parent_id: int | None
    deltas: tuple[ChainDelta, ...]     # apply order
    keyframe: dict[str, str] | None    # tensor -> artifact digest of its full copy at this version


class CheckoutChain(NamedTuple):
    steps: list[ChainStep]             # base version .. the target
    fingerprints: dict[str, str]       # recorded for the target (empty: an unsealed revert)
