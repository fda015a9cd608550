"""The persistent kill switch: a file that halts new entries until it is removed.

``ai-trading-bridge halt`` writes ``halt.json`` in the daemon's state folder (a per-user
data folder by default, from platformdirs); ``ai-trading-bridge resume`` removes it. A
running daemon looks at the file before each decision (one ``stat``, about a microsecond),
so a halt takes effect on the next bar whether or not the control socket is on, and a
restarted daemon starts halted. The switch fails closed: a halt file that cannot be read
still halts. The reason is kept as given; everything that shows it (``reload --status``,
``monitor``, the hello reply's ``risk``, a refusal's detail, the log) shows it on one line.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import platformdirs

APP_NAME = "ai-trading-bridge"
HALT_FILE = "halt.json"
# Line breaks and other control characters (C0, DEL, C1, the Unicode line and paragraph
# separators): a reason typed with them would break the one-line status outputs.
_CONTROL_RUN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def default_log_file() -> Path:
    """The daemon's JSON log in the per-user log folder (what ``monitor`` reads)."""
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)) / "daemon.log"


def default_state_dir() -> Path:
    """The per-user folder of the daemon's persistent state (kill switch)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


class KillSwitch:
    """The halt file of one state folder, re-read only when it changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / HALT_FILE
        self._path = str(self.path)  # os.stat of a str skips Path's conversion per call
        self._stamp: tuple[int, int] | None = None
        self._info: dict[str, Any] | None = None

    def status(self) -> dict[str, Any] | None:
        """The halt record (``reason`` on one line, ``halted_at``) while halted, else None."""
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._stamp = self._info = None
            return None
        except OSError as exc:  # cannot tell: fail closed
            return {"reason": f"the halt file {self.path} cannot be checked ({exc})"}
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                info = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(info, dict):
                    info = {"reason": "unreadable halt file"}
                elif info.get("reason"):
                    info = {**info, "reason": one_line(str(info["reason"]))}
                self._info = info
            except (OSError, ValueError) as exc:
                self._info = {"reason": f"the halt file {self.path} is unreadable ({exc})"}
        return self._info

    @property
    def halted(self) -> bool:
        """Whether new entries are halted."""
        return self.status() is not None

    def halt(self, reason: str) -> tuple[dict[str, Any], bool]:
        """Engage the switch (atomic write); returns the record in force and whether this
        call engaged it.

        Already halted, the first halt's record is kept (when and why trading first
        stopped) and returned with False; a halt file that cannot be read is replaced.
        """
        earlier = self.status()
        if earlier is not None and earlier.get("halted_at"):
            return earlier, False
        record = {
            "halted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "reason": reason,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record), encoding="utf-8")
        os.replace(temporary, self.path)
        return record, True

    def resume(self) -> bool:
        """Release the switch; False when it was not engaged."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


def one_line(text: str) -> str:
    """``text`` with each run of line breaks and other control characters as one space."""
    return _CONTROL_RUN.sub(" ", text).strip()


def halt_text(record: dict[str, Any]) -> str:
    """``since <UTC time> (<reason>)`` of a halt record, a ``risk`` block (``since``)
    or a ``kill_switch_engaged`` log line (``halted_at``), for people to read: one line,
    whatever the reason holds."""
    since = record.get("since") or record.get("halted_at")
    reason = one_line(str(record.get("reason") or "")) or "no reason given"
    return f"since {since} ({reason})" if since else f"({reason})"
