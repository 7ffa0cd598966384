"""Generate engine/src/tokenizer/unicode_tables.cpp.

The CLIP tokenizer needs a few Unicode properties: letters (regex \\p{L}), numbers (\\p{N}) and
lowercase mappings as transformers' CLIPTokenizer sees them, plus canonical decompositions and
combining classes for NFC. They are data, not code: this script writes them once; rerun it (and
commit the result) when the pinned `tokenizers` moves to a newer Unicode.

Letters, numbers and lowercase are read off the pinned `tokenizers` package itself (its regex
engine and Lowercase normalizer: Unicode 16 for tokenizers 0.23), because Python's unicodedata
is older (14.0 in Python 3.11) and would miss every letter assigned since. NFC data comes from
unicodedata (canonical composition is stable across versions), grapheme-break properties from
the `regex` package (installed with transformers).

    python3 tests/engine/tokenizer_unicode_tables.py engine/src/tokenizer/unicode_tables.cpp
"""

import sys
import unicodedata

MAX_CP = 0x110000


def ranges(pred):
    out = []
    start = None
    for cp in range(MAX_CP + 1):
        ok = cp < MAX_CP and pred(cp)
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def emit_pairs(name, ctype, rows, per_line=6):
    lines = [f"const {ctype} {name}[] = {{"]
    for i in range(0, len(rows), per_line):
        lines.append("    " + " ".join(rows[i : i + per_line]))
    lines.append("};")
    lines.append(f"const std::size_t {name}Size = sizeof({name}) / sizeof({name}[0]);")
    return "\n".join(lines)


def tokenizers_classes():
    """code point -> 'L' | 'N' | 'O' | 'ws', from CLIP's split pattern run by `tokenizers`."""
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Split(
        Regex(r"[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"), behavior="removed", invert=True
    )
    classes = {}
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            continue
        c = chr(cp)
        words = tuple(w for w, _ in split.pre_tokenize_str("a" + c + c))
        kinds = {("a" + c + c,): "L", ("a", c, c): "N", ("a", c + c): "O", ("a",): "ws"}
        classes[cp] = kinds[words]
    return classes


# Grapheme_Cluster_Break values, in the order of unicode::GraphemeBreak (grapheme.cpp).
GCB_VALUES = ["Other", "CR", "LF", "Control", "Extend", "ZWJ", "Regional_Indicator", "Prepend",
              "SpacingMark", "L", "V", "T", "LV", "LVT"]
INCB_VALUES = ["None", "Consonant", "Extend", "Linker"]


def grapheme_properties():
    """code point -> gcb | extended_pictographic << 4 | incb << 5, from the `regex` package.

    transformers' T5 normalizer works per extended grapheme cluster (Rust unicode-segmentation);
    these are the properties UAX #29's rules read.
    """
    import regex

    cps = [cp for cp in range(MAX_CP) if not is_surrogate(cp)]
    text = "".join(chr(cp) for cp in cps)
    props = [0] * len(cps)

    def mark(pattern, value):
        for m in regex.finditer(pattern, text):
            props[m.start()] |= value

    for i, name in enumerate(GCB_VALUES[1:], start=1):
        mark(r"\p{Grapheme_Cluster_Break=%s}" % name, i)
    mark(r"\p{Extended_Pictographic}", 1 << 4)
    for i, name in enumerate(INCB_VALUES[1:], start=1):
        mark(r"\p{InCB=%s}" % name, i << 5)
    by_cp = dict(zip(cps, props))
    rows = []
    start = None
    for cp in range(MAX_CP + 1):
        value = by_cp.get(cp, 0) if cp < MAX_CP else -1
        if start is not None and value != start[1]:
            if start[1] != 0:
                rows.append("{0x%X, 0x%X, %d}," % (start[0], cp - 1, start[1]))
            start = None
        if start is None and value != -1:
            start = (cp, value)
    return rows


def main(out_path):
    from tokenizers import normalizers

    classes = tokenizers_classes()
    letters = ranges(lambda cp: classes.get(cp) == "L")
    numbers = ranges(lambda cp: classes.get(cp) == "N")
    spaces = [cp for cp, kind in classes.items() if kind == "ws"]
    expected_spaces = [0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680] + list(
        range(0x2000, 0x200B)
    ) + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
    assert spaces == expected_spaces, "white space changed: update unicode::IsWhitespace"
    lowercase = normalizers.Lowercase()
    lower_rows = []
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            continue
        low = lowercase.normalize_str(chr(cp))
        if low != chr(cp):
            cps = [ord(c) for c in low] + [0, 0]
            lower_rows.append("{0x%X, {0x%X, 0x%X, 0x%X}}," % (cp, cps[0], cps[1], cps[2]))
    ccc_rows = []
    for lo, hi in ranges(lambda cp: not is_surrogate(cp) and unicodedata.combining(chr(cp)) != 0):
        # Split ranges so each row has a single class.
        cp = lo
        while cp <= hi:
            c = unicodedata.combining(chr(cp))
            end = cp
            while end + 1 <= hi and unicodedata.combining(chr(end + 1)) == c:
                end += 1
            ccc_rows.append("{0x%X, 0x%X, %d}," % (cp, end, c))
            cp = end + 1
    decomp_rows = []
    for cp in range(MAX_CP):
        if is_surrogate(cp) or 0xAC00 <= cp <= 0xD7A3:
            continue
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        first = parts[0]
        second = parts[1] if len(parts) > 1 else 0
        composes = len(parts) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp)
        decomp_rows.append("{0x%X, 0x%X, 0x%X, %d}," % (cp, first, second, int(composes)))
    letter_rows = ["{0x%X, 0x%X}," % r for r in letters]
    number_rows = ["{0x%X, 0x%X}," % r for r in numbers]
    parts = [
        "// clang-format off",
        "// Generated by tests/engine/tokenizer_unicode_tables.py (letters, numbers, lowercase:",
        "// the pinned tokenizers package; NFC: Python's unicodedata "
        f"{unicodedata.unidata_version}). Do not edit.",
        '#include "unicode_tables.h"',
        "",
        "namespace grat::tokenizer::unicode_data {",
        "",
        emit_pairs("kLetters", "Range", letter_rows, per_line=12),
        "",
        emit_pairs("kNumbers", "Range", number_rows, per_line=12),
        "",
        emit_pairs("kLowercase", "LowerMapping", lower_rows, per_line=6),
        "",
        emit_pairs("kCombiningClass", "ClassRange", ccc_rows, per_line=8),
        "",
        emit_pairs("kDecomposition", "Decomposition", decomp_rows, per_line=6),
        "",
        emit_pairs("kGraphemeProps", "ClassRange", grapheme_properties(), per_line=8),
        "",
        "}  // namespace grat::tokenizer::unicode_data",
        "",
    ]
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))


if __name__ == "__main__":
    main(sys.argv[1])
