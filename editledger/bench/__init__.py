"""``editledger bench``: every benchmark of the project, side by side in one run, as JSON and a markdown table.

One module per benchmark (``ledger_io``, ``editors``, ``scoring``, ``checkout``, ``replay``, ``sharing``,
``gptj``); ``figures`` holds the timing helpers (median / min / max after a warm-up, peak memory) and the
machine description, ``table`` the markdown. ``run.run_all`` runs them. Each benchmark returns a
``Section``: its figures, each one measured, never assumed.
"""
