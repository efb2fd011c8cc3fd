"""Reading the text files users give the plugin (manifests, ``.lbl`` files, ``labels.csv``,
datasets' metadata lists), whatever tool wrote them.

Windows tools write text that is not plain UTF-8 with LF line ends: Excel's "CSV UTF-8" starts
the file with a UTF-8 byte-order mark (BOM) and ends lines with CRLF; its "CSV (Comma
delimited)" and Notepad's "ANSI" write a legacy code page (Windows-1252 on Western systems).
The first two are unambiguous and are simply read: the BOM is dropped (it is not part of the
first field) and CR before LF is dropped.  A legacy code page cannot be told apart from other
encodings, so a file that is not UTF-8 is an :class:`~mae_ast_plugin.errors.InputError` naming
the file, the line and the byte, and saying to re-save the file as UTF-8.
"""

import codecs
from collections.abc import Iterator

from .errors import InputError

REMEDY = (
    "the file was probably saved in a legacy code page such as Windows-1252 (Excel's 'CSV "
    "(Comma delimited)', Notepad's 'ANSI'): re-save it as UTF-8 (Excel: 'CSV UTF-8'; Notepad: "
    "'UTF-8'), or convert it with: iconv -f WINDOWS-1252 -t UTF-8 FILE > NEW_FILE"
)


def _not_utf8(path: str, line_no: int, offset: int, byte: int, error) -> Exception:
    return error(
        f"{path}:{line_no}: not UTF-8 text (byte 0x{byte:02x} at byte offset {offset} of the "
        f"file); {REMEDY}"
    )


def iter_lines(path: str, error=InputError) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` of every line of ``path`` (1-based, line end, CR included,
    removed), read as UTF-8 with an optional byte-order mark, one line at a time (a manifest of
    millions of lines is never held whole).  Raises ``error`` (an exception class taking a
    message) naming the file, line and byte when the file is not UTF-8 or is UTF-16."""
    offset = 0
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            start = 0
            if line_no == 1:
                if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    raise error(
                        f"{path}:1: UTF-16 text (it starts with a UTF-16 byte-order mark, as "
                        "Excel's 'Unicode Text' writes): re-save it as UTF-8 (Excel: 'CSV UTF-8')"
                    )
                if raw.startswith(codecs.BOM_UTF8):
                    start = len(codecs.BOM_UTF8)
            try:
                text = raw[start:].decode("utf-8")
            except UnicodeDecodeError as err:
                position = start + err.start
                raise _not_utf8(path, line_no, offset + position, raw[position], error) from None
            offset += len(raw)
            yield line_no, text.rstrip("\n").rstrip("\r")


def read_lines(path: str, error=InputError) -> list[str]:
    """Every line of ``path`` as :func:`iter_lines` reads it (no line ends)."""
    return [text for _, text in iter_lines(path, error)]


def read_text(path: str, error=InputError) -> str:
    """The whole of a small text file as :func:`iter_lines` reads it, lines joined with LF (a
    final line end kept): what ``csv`` and ``json`` parse."""
    lines = read_lines(path, error)
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        ends_with_newline = False
        if handle.tell():
            handle.seek(-1, 2)
            ends_with_newline = handle.read(1) == b"\n"
    return "\n".join(lines) + ("\n" if ends_with_newline else "")
