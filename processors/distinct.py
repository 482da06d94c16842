"""The distinct value combinations of a few Arrow columns, and which one each row holds.

Enrichment decides per distinct (model, provider, day) rather than per call: a batch of
thousands of calls holds a handful of them. Arrow hashes one column at a time
(`dictionary_encode`), not a tuple of columns, so each row's per-column indices are combined
into one int64 code (mixed radix) and the codes are hashed once more.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def distinct(*columns: pa.Array) -> tuple[pa.Array, list[tuple[object, ...]]]:
    """(per row, the index of its combination in the list; the combinations as Python tuples).

    Nulls are values like any other (a combination may hold None).
    """
    codes: pa.Array | None = None
    dictionaries: list[list[object]] = []
    for column in columns:
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        indices = pc.cast(encoded.indices, pa.int64())
        dictionaries.append(encoded.dictionary.to_pylist())
        # At most len(rows) values per column: three columns of a million rows still fit an int64.
        codes = indices if codes is None else pc.add(pc.multiply(codes, len(encoded.dictionary)), indices)
    if codes is None:
        raise ValueError("distinct needs at least one column")
    combined = pc.dictionary_encode(codes)
    combinations = []
    for code in combined.dictionary.to_pylist():
        values: list[object] = []
        for dictionary in reversed(dictionaries):
            code, index = divmod(code, len(dictionary))
            values.append(dictionary[index])
        combinations.append(tuple(reversed(values)))
    return combined.indices, combinations
