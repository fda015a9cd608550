"""Build the NinjaScript import archive of the AITradingBridge strategy.

The archive is what NinjaTrader 8's Control Center > Tools > Import > NinjaScript Add-On
takes, laid out as NinjaTrader's own export (Tools > Export > NinjaScript Add-On) lays
it out: an ``Info.xml`` naming the NinjaTrader version of the export at the root, and
each source file under its folder relative to ``Documents\\NinjaTrader 8\\bin\\Custom``:

    Info.xml
    Strategies/AITradingBridge.cs
    AddOns/AITradingBridge/<helper>.cs

NinjaTrader copies the files into bin\\Custom and compiles them. Only source files: no
DLL is needed or shipped. The zip is reproducible (fixed time stamps, sorted names).

Usage: ``python ninjatrader/build_archive.py [--out PATH] [--source DIR]`` (default
``dist/AITradingBridge_NinjaScript.zip`` from this folder); prints the path it wrote.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "dist" / "AITradingBridge_NinjaScript.zip"
# Oldest NinjaTrader 8 release the code is written for; an import from an export made by
# a newer NinjaTrader than the one installed is what the importer warns about.
EXPORT_VERSION = "8.0.27.1"
FOLDERS = ("Strategies", "AddOns")
FIXED_TIME = (2020, 1, 1, 0, 0, 0)

INFO_XML = f"""<?xml version="1.0" encoding="utf-8"?>
<NinjaTrader>
  <Export>
    <Version>{EXPORT_VERSION}</Version>
  </Export>
</NinjaTrader>
"""


def archive_members(root: Path = HERE) -> dict[str, Path]:
    """Archive name (forward slashes, relative to bin/Custom) -> source file."""
    members: dict[str, Path] = {}
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.cs")):
            members[path.relative_to(root).as_posix()] = path
    if "Strategies/AITradingBridge.cs" not in members:
        raise FileNotFoundError(f"{root / 'Strategies' / 'AITradingBridge.cs'} is missing")
    return members


def build(out: Path, root: Path = HERE) -> list[str]:
    """Write the archive to ``out``; returns the names it holds, in order."""
    out.parent.mkdir(parents=True, exist_ok=True)
    members = archive_members(root)
    names = ["Info.xml", *members]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("Info.xml", FIXED_TIME), INFO_XML)
        for name, path in members.items():
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            # CRLF as NinjaScript Editor saves files on Windows
            text = path.read_text(encoding="utf-8").replace("\r\n", "\n").replace("\n", "\r\n")
            archive.writestr(info, text.encode("utf-8"))
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="zip file to write")
    parser.add_argument(
        "--source", type=Path, default=HERE, help="folder holding Strategies/ and AddOns/"
    )
    args = parser.parse_args(argv)
    try:
        names = build(args.out, args.source)
    except (OSError, UnicodeDecodeError) as error:
        print(f"error: {error}; run from a checkout with the ninjatrader/ folder", file=sys.stderr)
        return 1
    print(f"{args.out} ({len(names)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
