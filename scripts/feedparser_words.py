#!/usr/bin/env python3
"""Print what Python's feedparser reads from each feed file, as one JSON object per line:

    {"file": "NAME", "entries": [{"title": "...", "text": "..."}, ...]}

`text` is the entry's summary and every content value, joined by newlines (raw, as feedparser
gives them: HTML is left in; the Rust test normalises both sides with newswatch's normaliser).
Used by tests/corpus.rs (corpus_entry_text_matches_feedparser) to find entries where newswatch
keeps materially less text than feedparser. Usage: feedparser_words.py DIR
"""

import json
import os
import sys

import feedparser


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder = sys.argv[1]
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            parsed = feedparser.parse(f.read())
        entries = []
        for e in parsed.entries:
            parts = [e.get("summary", "")]
            parts += [c.get("value", "") for c in e.get("content", [])]
            entries.append({"title": e.get("title", ""), "text": "\n".join(parts)})
        print(json.dumps({"file": name, "entries": entries}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
