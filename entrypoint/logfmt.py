"""JSON log lines (AUTO_INFER_LOG_FORMAT=json) for log collectors."""

from __future__ import annotations

import json
import logging
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:  # exc_text: the traceback as a filter (redact.py's) left it
            body["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(body)
