"""Which store errors retrying can fix (an outage, an overload) and which it cannot (the write itself is wrong).

Classified by ClickHouse's error code (clickhouse-connect's `Error.code`, or `Code: N` in the message for
chDB): a code in `PERMANENT` stops the processor with one line naming it; anything else is retried,
because stopping on an unknown error would turn a passing outage into an outage of the pipeline.
"""

from __future__ import annotations

import re

from clickhouse_connect.driver.exceptions import DataError, Error, ProgrammingError

# ClickHouse error codes (src/Common/ErrorCodes.cpp) whose cause is the statement or its data, not the server's state.
PERMANENT: dict[int, str] = {
    6: "CANNOT_PARSE_TEXT",
    8: "THERE_IS_NO_COLUMN",
    10: "NOT_FOUND_COLUMN_IN_BLOCK",
    16: "NO_SUCH_COLUMN_IN_TABLE",
    20: "NUMBER_OF_COLUMNS_DOESNT_MATCH",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    41: "CANNOT_PARSE_DATETIME",
    43: "ILLEGAL_TYPE_OF_ARGUMENT",
    44: "ILLEGAL_COLUMN",
    47: "UNKNOWN_IDENTIFIER",
    50: "UNKNOWN_TYPE",
    53: "TYPE_MISMATCH",
    62: "SYNTAX_ERROR",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    72: "CANNOT_PARSE_NUMBER",
    117: "INCORRECT_DATA",
    164: "READONLY",
    192: "UNKNOWN_USER",
    194: "REQUIRED_PASSWORD",
    497: "ACCESS_DENIED",
    516: "AUTHENTICATION_FAILED",
}
_CODE = re.compile(r"\bCode:\s*(\d+)")


class PermanentWriteError(RuntimeError):
    """A write that fails the same way however often it is retried; `str()` is the one line to log."""


def error_code(error: BaseException) -> int | None:
    code = getattr(error, "code", None) if isinstance(error, Error) else None
    if code is None:
        match = _CODE.search(str(error))
        code = int(match.group(1)) if match else None
    return code


def permanent_cause(error: BaseException) -> str | None:
    """Why retrying `error` cannot help, or None when it may (a transient error)."""
    code = error_code(error)
    first_line = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    if code in PERMANENT:
        return f"ClickHouse error {code} {PERMANENT[code]}: {first_line}"
    if code is None and isinstance(error, DataError | ProgrammingError | TypeError | ValueError | AttributeError):
        # Raised by clickhouse-connect while checking or serialising the batch (an unknown column, a
        # value of the wrong type), before anything reaches the server: the same rows fail the same way.
        return f"{type(error).__name__} while encoding the batch: {first_line}"
    return None
