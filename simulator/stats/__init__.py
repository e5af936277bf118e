"""Second-moment statistics of edited layers' keys (C = E[k k^T]) and the corpora they come from."""
from simulator.stats.corpus import CORPUS_KINDS, Corpus, ids_digest
from simulator.stats.second_moment import (InMemoryStatsCache, StatsCache, StatsKey, StatsProvider,
                                           collect_second_moment, tensor_digest)

__all__ = ["CORPUS_KINDS", "Corpus", "InMemoryStatsCache", "StatsCache", "StatsKey", "StatsProvider",
           "collect_second_moment", "ids_digest", "tensor_digest"]
