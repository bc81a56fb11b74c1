"""Line bookkeeping for ``csv.reader``, so that every parsed record can be traced to its line numbers.

A quoted field may span several lines, so a record's line number cannot be taken from the
reader's output. :class:`LineCounter` wraps the text that the reader consumes, counts the lines
and keeps those of the record being read, which the dataset readers quote in their errors.
"""

import io


class LineCounter:
    """Line iterator that counts the lines a csv.reader consumes and keeps those of the current record."""

    def __init__(self, lines: io.StringIO) -> None:
        self._lines = lines
        self.count = 0
        self.consumed: list[str] = []

    def __iter__(self) -> "LineCounter":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        self.consumed.append(line)
        return line
