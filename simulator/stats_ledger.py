"""Second-moment statistics stored in the ledger: content-addressed artifacts keyed by model
fingerprint, layer, corpus digest and sample count, so every edit records exactly which
statistics it used (their artifact digests end up in ``version.stats_used``)."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ledger.artifacts import ArtifactStore, atomic_write
from ledger.errors import UserError
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


class SessionStatsProvider(StatsProvider):
    """Statistics are always taken on the base weights: on a cache miss while the session holds an
    edited version (a resumed or branched run), check out the base, collect, and come back."""

    def __init__(self, session, corpus: Corpus, progress: bool = True):
        from simulator.models import cache_root
        machine = None if os.environ.get("EDITLEDGER_NO_MACHINE_STATS") else cache_root().parent / "stats"
        super().__init__(session.lm.fingerprint, corpus, LedgerStatsCache(session.ledger, machine), progress)
        self.session = session
        self.seconds = 0.0          # time spent collecting (the demo reports it)

    def get(self, model, tokenizer, spec, layer: int):
        hit = self.cache.get(self.key(model, tokenizer, spec, layer))
        if hit is not None:
            return hit
        t = time.perf_counter()
        s, here = self.session, self.session.current_version_id
        if here != s.base_version_id:
            s.checkout(s.base_version_id)
        try:
            return super().get(model, tokenizer, spec, layer)
        finally:
            if here != s.base_version_id:
                s.checkout(here)
            self.seconds += time.perf_counter() - t


def ledger_stats_provider(session, corpus: str = "self", n_tokens: int | None = None,
                          progress: bool = True, default_tokens: int = 4096) -> SessionStatsProvider:
    cfg = session.lm.model.config
    max_pos = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 2048
    # many short sequences sample fast (simulator/stats/corpus.py); leave room for a prefix token
    seq_len = min(Corpus.seq_len, int(max_pos) - 8)
    kind, path = (corpus, None) if corpus in ("self", "wikitext") else ("file", corpus)
    c = Corpus(kind=kind, path=path, n_tokens=n_tokens or default_tokens, seq_len=seq_len)
    return SessionStatsProvider(session, c, progress)
