"""Widgets of the editledger TUI."""
