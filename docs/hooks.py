"""MkDocs hook: a page may include a section of README.md, so that its text is written once.

A line ``<!-- README section: HEADING -->`` becomes the body of README.md's section whose
``## `` heading starts with HEADING (up to the next ``## `` heading); its links into ``docs/``
are made relative to the including page.
"""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"^<!-- README section: (.+?) -->$", re.MULTILINE)


def readme_section(heading):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    start = text.find(f"\n## {heading}")
    if start < 0:
        raise ValueError(f"README.md has no section '## {heading}'")
    body = text[text.index("\n", start + 1) + 1:]
    end = body.find("\n## ")
    return body if end < 0 else body[:end]


def on_page_markdown(markdown, page, config, files):
    up = "../" * page.file.src_uri.count("/")
    return MARKER.sub(lambda match: readme_section(match.group(1)).replace("](docs/", f"]({up}"),
                      markdown)
