#!/usr/bin/env python3
"""Reads `cargo test --no-run --message-format=json` on stdin and prints, one per line and
tab-separated, the package folder, the test executable and a test-name filter for each test
target named on the command line: PACKAGE (every test target of the package: its library's
unit tests and its tests/), PACKAGE:TARGET (one of them) or PACKAGE:TARGET/FILTER (its tests
whose names contain FILTER). scripts/test.sh runs these again on another Vulkan driver."""
import json
import os
import sys

specs = {}
for arg in sys.argv[1:]:
    target, _, name_filter = arg.partition("/")
    specs[target] = name_filter
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    msg = json.loads(line)
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    target = msg["target"]
    if not msg["profile"]["test"] or not set(target["kind"]) & {"lib", "test"}:
        continue
    folder = os.path.dirname(msg["manifest_path"])
    package = os.path.basename(folder)
    for spec in (package, f"{package}:{target['name']}"):
        if spec in specs:
            print(f"{folder}\t{msg['executable']}\t{specs[spec]}")
            break
