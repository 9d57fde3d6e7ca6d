"""Sphinx configuration: the docs are MyST Markdown, built with warnings as errors
(`make docs`)."""

project = "tbhook"
author = "the tbhook developers"
copyright = "2026, the tbhook developers"  # noqa: A001 - Sphinx's own name
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "examples.py"]
myst_heading_anchors = 3
html_theme = "alabaster"
html_title = "tbhook"
html_show_sourcelink = False
