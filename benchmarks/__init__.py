"""Offline benchmark scripts: each prints ratios measured side by side and writes JSON + Markdown."""
