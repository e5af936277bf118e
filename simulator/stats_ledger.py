"""Second-moment statistics stored in the ledger: content-addressed artifacts keyed by model
fingerprint, layer, corpus digest and sample count, so every edit records exactly which
statistics it used (their artifact digests end up in ``version.stats_used``)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ledger.artifacts import ArtifactStore, atomic_write
from ledger.errors import UserError
from simulator.models import cache_root
from simulator.stats import Corpus, StatsKey, StatsProvider


class LedgerStatsCache:
    """``simulator.stats.StatsCache`` over ``Ledger.get_stats``/``put_stats``.

    Behind the ledger sits a per-machine copy (``<model cache>/../stats``): statistics depend only
    on the key (model fingerprint, layer, corpus recipe or digest, sample count), so a second ledger
    on the same machine — a new demo, a test — takes them from there instead of sampling again.
    The copy is a content-addressed store of its own, verified on read like the ledger's, and what
    an edit uses is always recorded in the ledger it writes to."""

    def __init__(self, ledger, machine_dir: Path | None = None):
        self.ledger = ledger
        self.machine = ArtifactStore(machine_dir) if machine_dir is not None else None
        # statistics already read (and verified) in this process, by key: every ROME edit asks for the
        # same C, and reading it back is a query plus 16 MB read and hashed (Gemma; 1 GiB for GPT-J)
        self._seen: dict[StatsKey, tuple[str, object]] = {}

    def _kw(self, key: StatsKey) -> dict:
        return dict(model_fingerprint=key.model_fingerprint, layer=key.layer,
                    corpus_digest=key.corpus_digest, sample_count=key.sample_count)

    def _index(self, key: StatsKey) -> Path:
        name = hashlib.sha256("|".join(map(str, self._kw(key).values())).encode()).hexdigest()
        return self.machine.root / "index" / name

    def get(self, key: StatsKey):
        if key in self._seen:
            return self._seen[key]
        hit = self.ledger.get_stats(**self._kw(key))
        if hit is not None:
            digest, tensors = hit
            self._seen[key] = (digest, tensors["C"])
            return self._seen[key]
        if self.machine is not None and self._index(key).exists():
            try:
                tensors = self.machine.read(self._index(key).read_text().strip())
            except UserError:
                return None          # a damaged machine copy is simply recomputed
            self._seen[key] = (self.ledger.put_stats(**self._kw(key), tensors={"C": tensors["C"]}), tensors["C"])
            return self._seen[key]
        return None

    def put(self, key: StatsKey, tensor) -> str:
        digest = self.ledger.put_stats(**self._kw(key), tensors={"C": tensor.contiguous()})
        self._seen[key] = (digest, tensor)
        if self.machine is not None:
            try:
                mdigest, _ = self.machine.write({"C": tensor.contiguous()}, metadata=self._kw(key))
                atomic_write(self._index(key), mdigest.encode())
            except OSError:
                pass                 # the machine copy is an optimisation; the ledger has the record
        return digest


def ledger_stats_provider(session, corpus: str = "self", n_tokens: int | None = None,
                          progress: bool = True, default_tokens: int = 4096) -> StatsProvider:
    """A provider whose statistics live in the session's ledger (and the machine's copy). It
    collects only on the base weights (checked against the fingerprint); ``Session.prepare_statistics``
    collects them before the first edit, so an edit only ever reads them."""
    cfg = session.lm.model.config
    max_pos = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 2048
    # many short sequences sample fast (simulator/stats/corpus.py); leave room for a prefix token
    seq_len = min(Corpus.seq_len, int(max_pos) - 8)
    kind, path = (corpus, None) if corpus in ("self", "wikitext") else ("file", corpus)
    c = Corpus(kind=kind, path=path, n_tokens=n_tokens or default_tokens, seq_len=seq_len)
    machine = None if os.environ.get("EDITLEDGER_NO_MACHINE_STATS") else cache_root().parent / "stats"
    return StatsProvider(session.lm.fingerprint, c, LedgerStatsCache(session.ledger, machine), progress)
