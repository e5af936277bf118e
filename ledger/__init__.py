"""The ledger: SQL tables (SQLModel + Alembic) and a content-addressed safetensors artifact store.

Importing it does not import torch (the TUI opens a ledger with no model loaded).
"""
from ledger.api import FsckReport, Ledger, RunSummary, TimelineRow
from ledger.artifacts import ArtifactStore
from ledger.engine import resolve
from ledger.records import DeltaInput, ProbeRecord
from ledger.schema import (
    ArtifactRow, AuditFindingRow, BaseModelRow, DeltaRow, EditRequestRow, ProbeResultRow, RunRow,
    StatsCacheRow, VersionRow,
)

__all__ = [
    "Ledger", "FsckReport", "RunSummary", "TimelineRow", "ArtifactStore", "resolve", "DeltaInput",
    "ProbeRecord", "ArtifactRow", "AuditFindingRow", "BaseModelRow", "DeltaRow", "EditRequestRow",
    "ProbeResultRow", "RunRow", "StatsCacheRow", "VersionRow",
]
