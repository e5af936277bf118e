"""Export a table as shown (its filtered, sorted rows; the cells' text) to CSV or JSON."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from tui.widgets.lazy_table import LazyTable


def table_records(table: LazyTable) -> tuple[list[str], list[list[str]]]:
    header = [c.label or c.key for c in table.columns]
    return header, [table.cell_texts(i) for i in range(len(table.rows))]


def write_table(path: Path, table: LazyTable) -> Path:
    """Write ``table`` to ``path``: JSON (a list of {column: text}) for a .json name, else CSV."""
    header, rows = table_records(table)
    path = path.expanduser()
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps([dict(zip(header, r)) for r in rows], ensure_ascii=False, indent=1) + "\n",
                        encoding="utf-8")
    elif path.suffix.lower() in (".csv", ""):
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    else:
        raise ValueError(f"{path.name}: write a name ending in .csv or .json")
    return path
