"""`make submit`: submission.zip with the files a student edits in every lab and a manifest.

The manifest (`manifest.json`) lists each file as lab, file and sha256; the instructor's
`make grade SUBMISSIONS=…` checks it. Nothing else goes in: no tests, no notebooks, no data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path

from harness.runtime.config import ROOT
from harness.runtime.labs import all_labs

FORMAT = "opensky-labs-submission/1"


def build(out: Path, labs_root: Path = ROOT / "labs") -> list[dict[str, str]]:
    """Write the zip; returns the manifest's entries."""
    entries = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for lab in all_labs(labs_root):
            for name in lab.edit:
                path = lab.folder / name
                if not path.is_file():
                    continue
                data = path.read_bytes()
                archive.writestr(f"labs/{lab.name}/{name}", data)
                entries.append(
                    {"lab": lab.name, "file": name, "sha256": hashlib.sha256(data).hexdigest()}
                )
        manifest = {"format": FORMAT, "files": entries}
        archive.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.grading.submit", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("submission.zip"))
    parser.add_argument("--labs-root", type=Path, default=ROOT / "labs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    entries = build(args.out, args.labs_root)
    for entry in entries:
        print(f"  {entry['lab']}/{entry['file']}  sha256 {entry['sha256'][:12]}")
    print(f"{args.out}: {len(entries)} file(s). Hand this file in.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
