"""Screens of the editledger TUI, one per module."""
