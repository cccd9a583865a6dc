"""Log set-up for `switchboard serve`: text lines as before, or one JSON object per line (`--log-format json`).

Configured once, here, from cli.py. In json mode every record becomes `{"time", "level", "logger", "message", ...}`
plus the fields a record carries in `extra={"fields": {...}}` (the access log's); Python warnings go through
logging too and progress bars are off, so a log shipper can parse every line. Nothing here logs prompts or keys:
callers never pass them.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, then the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """The root logger's one handler (stderr), at `level`, as text or JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(log_format == "json")
    if log_format == "json":  # progress bars are not log lines (transformers' "Loading weights", the hub's)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
