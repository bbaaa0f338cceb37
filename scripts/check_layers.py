#!/usr/bin/env python3
"""Fails when a public header includes a layer above its own (DESIGN.md: arrows never point up).

Usage: scripts/check_layers.py [REPO_ROOT]   (CTest runs it as `check_layers`, label cpu)

Reads every .hpp/.cuh under include/cluscomp/, takes each `#include "cluscomp/<folder>/..."` and
checks it against LAYERS below, the one place the order is written (docs/architecture.md draws
it). Prints one `file:line: message` per bad include and exits 1; exits 0 when all arrows point
down. Python 3 standard library only, so it runs wherever CTest does.
"""
import os
import re
import sys

# Bottom first. A folder may include its own folder and any folder on a lower level; folders on
# the same level may NOT include each other, so siblings stay independent (cluster need not build
# with ops, io need not know the autograd) and an arrow between them is a decision to write here,
# by moving one of them a level up.
LAYERS = [
    ["core"],        # host-device math, plain C++17: config, dtype, view, bitpack, distance, device
    ["host"],        # host-only helpers: parallel, digest, uninit, checked, device_status
    ["codebook"],    # CodebookTensor (owning), decode, the supported-configuration list
    ["reference"],   # naive *_ref twins (see REFERENCE_MAY_INCLUDE)
    ["cluster", "ops", "cuda"],  # k-means; lookup GEMM and the runtime's kernels; GPU API (.cuh)
    ["autograd"],    # saved-context ops over ops/, AdamW, losses
    ["io"],          # file formats, configs, tokenizers
    ["model"],       # LLaMA runtime (Linear, LlamaModel), TrainBlock, TrainModel, perplexity
    ["pipeline"],    # compress, calibrate, recover, activation statistics
]

# The reference twins exist to catch a mistake shared with the optimised code (DESIGN.md rule 6),
# so they may see the plain data types they take (core, the CodebookTensor they decode) and each
# other, and nothing else; and no library header may include them (only tests and benchmarks do).
REFERENCE_MAY_INCLUDE = {"core", "codebook", "reference"}

INCLUDE = re.compile(r'^\s*#\s*include\s*"cluscomp/([^/"]+)/')


def level_of():
    levels = {}
    for i, folders in enumerate(LAYERS):
        for f in folders:
            levels[f] = i
    return levels


def check(root):
    inc = os.path.join(root, "include", "cluscomp")
    levels = level_of()
    errors = []
    for dirpath, _, files in os.walk(inc):
        for name in sorted(files):
            if not name.endswith((".hpp", ".cuh")):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            folder = os.path.relpath(path, inc).split(os.sep)[0]
            if folder not in levels:
                errors.append(f"{rel}:1: folder '{folder}' has no layer; add it to LAYERS in scripts/check_layers.py")
                continue
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = m.group(1)
                    what = line.strip()
                    if target not in levels:
                        errors.append(f"{rel}:{lineno}: {what}: folder '{target}' has no layer")
                    elif target == folder:
                        continue
                    elif folder == "reference" and target not in REFERENCE_MAY_INCLUDE:
                        errors.append(f"{rel}:{lineno}: {what}: a reference twin may include only "
                                      f"{', '.join(sorted(REFERENCE_MAY_INCLUDE))}")
                    elif target == "reference":
                        errors.append(f"{rel}:{lineno}: {what}: library headers never include the "
                                      "reference twins (tests do)")
                    elif levels[target] > levels[folder]:
                        errors.append(f"{rel}:{lineno}: {what}: '{folder}' (layer {levels[folder]}) "
                                      f"includes '{target}' (layer {levels[target]}), an arrow pointing up")
                    elif levels[target] == levels[folder]:
                        errors.append(f"{rel}:{lineno}: {what}: '{folder}' and '{target}' share layer "
                                      f"{levels[folder]} and must not include each other")
    return errors


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    if not os.path.isdir(os.path.join(root, "include", "cluscomp")):
        print(f"check_layers: no include/cluscomp under {root}", file=sys.stderr)
        return 2
    errors = check(root)
    for e in errors:
        print(e)
    if errors:
        print(f"check_layers: {len(errors)} include(s) break the layer order (scripts/check_layers.py LAYERS)")
        return 1
    print("check_layers: every include points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
