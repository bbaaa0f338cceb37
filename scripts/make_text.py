#!/usr/bin/env python3
"""Turns the output of Debian's `bible` program into the project's plain-text corpus.

Input: `bible -l1000000 Gen1:1-Rev22:21` (chapter headings such as "Genesis 1", verses as
"  N text", blank lines between). Output, in OUTDIR:
  kjv.txt              the whole Bible: per chapter a heading line, then one verse per line
                       (verse numbers dropped), chapters separated by a blank line; UTF-8, LF.
  kjv.calibration.txt  Genesis .. Malachi (Old Testament): calibration data only.
  kjv.evaluation.txt   Matthew .. Revelation (New Testament): evaluation data only.
The split is fixed by book, so it never changes and the two parts never overlap.
"""
import os
import re
import sys

src, outdir = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    raw = f.read().decode("ascii")  # the KJV text of this package is pure ASCII

chapters = []  # (heading, [verses])
verse_re = re.compile(r"^\s+(\d+)\s(.*)$")
for line in raw.splitlines():
    if not line.strip():
        continue
    m = verse_re.match(line)
    if m:
        if not chapters:
            sys.exit("make_text.py: verse before the first chapter heading")
        chapters[-1][1].append(m.group(2).strip())
    else:
        chapters.append((line.strip(), []))

if len(chapters) != 1189:
    sys.exit(f"make_text.py: expected 1189 chapters, got {len(chapters)}")
first_nt = next(i for i, (h, _) in enumerate(chapters) if h == "Matthew 1")

def render(chs):
    return "\n\n".join(h + "\n" + "\n".join(v) for h, v in chs) + "\n"

def write(name, text):
    path = os.path.join(outdir, name)
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(path + ".tmp", path)

write("kjv.calibration.txt", render(chapters[:first_nt]))
write("kjv.evaluation.txt", render(chapters[first_nt:]))
write("kjv.txt", render(chapters))  # last: its checksum marks the step as complete
