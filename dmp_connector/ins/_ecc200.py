"""A small ECC200 Data Matrix encoder (ISO/IEC 16022), pure Python, square symbols up to 104×104.

Written here because the INS Datamatrix needs its header in C40 (the ANS validator refuses a
symbol whose header is ASCII-encoded) and the maintained Python encoders choose the
encodation themselves. Encodation: C40 for the first ``c40_length`` characters (rounded up to
whole C40 triplets), then ASCII (digit pairs packed). Error correction: Reed–Solomon over
GF(256), polynomial 0x12D, blocks interleaved as the standard's table says. Placement: the
standard's Annex F algorithm. Reading is left to a maintained decoder (zxing-cpp).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Symbol", "codewords", "encode"]

# (size, data codewords, error codewords, region size, regions per side, interleaved blocks)
_SYMBOLS = (
    (10, 3, 5, 8, 1, 1),
    (12, 5, 7, 10, 1, 1),
    (14, 8, 10, 12, 1, 1),
    (16, 12, 12, 14, 1, 1),
    (18, 18, 14, 16, 1, 1),
    (20, 22, 18, 18, 1, 1),
    (22, 30, 20, 20, 1, 1),
    (24, 36, 24, 22, 1, 1),
    (26, 44, 28, 24, 1, 1),
    (32, 62, 36, 14, 2, 1),
    (36, 86, 42, 16, 2, 1),
    (40, 114, 48, 18, 2, 1),
    (44, 144, 56, 20, 2, 1),
    (48, 174, 68, 22, 2, 1),
    (52, 204, 84, 24, 2, 2),
    (64, 280, 112, 14, 4, 2),
    (72, 368, 144, 16, 4, 4),
    (80, 456, 192, 18, 4, 4),
    (88, 576, 224, 20, 4, 4),
    (96, 696, 272, 22, 4, 4),
    (104, 816, 336, 24, 4, 6),
)

_LATCH_C40 = 230
_UNLATCH = 254
_PAD = 129

# GF(256) with the Data Matrix polynomial x^8 + x^5 + x^3 + x^2 + 1 (0x12D).
_EXP = [0] * 512
_LOG = [0] * 256
_value = 1
for _i in range(255):
    _EXP[_i] = _value
    _LOG[_value] = _i
    _value <<= 1
    if _value & 0x100:
        _value ^= 0x12D
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _generator(n: int) -> list[int]:
    poly = [1]
    for i in range(1, n + 1):
        root = _EXP[i]
        poly = [a ^ _mul(b, root) for a, b in zip([*poly, 0], [0, *poly], strict=True)]
    return poly  # poly[0] is the x^n coefficient


def _ecc(data: list[int], n: int) -> list[int]:
    generator = _generator(n)
    remainder = [0] * n
    for value in data:
        factor = value ^ remainder[0]
        remainder = [*remainder[1:], 0]
        if factor:
            for j in range(n):
                remainder[j] ^= _mul(generator[j + 1], factor)
    return remainder


def _c40_value(char: str) -> int:
    if char == " ":
        return 3
    if "0" <= char <= "9":
        return ord(char) - 44
    if "A" <= char <= "Z":
        return ord(char) - 51
    raise ValueError("only space, digits and capitals go in the C40 part")


def codewords(text: str, c40_length: int) -> list[int]:
    """The data codewords: C40 for the first ``c40_length`` characters (to a whole triplet), ASCII after."""
    if any(ord(c) > 127 for c in text):
        raise ValueError("the Data Matrix text is ASCII")
    out: list[int] = []
    length = -(-c40_length // 3) * 3 if c40_length else 0
    if length > len(text):
        raise ValueError("the C40 part is longer than the text")
    if length:
        values = [_c40_value(c) for c in text[:length]]
        out.append(_LATCH_C40)
        for i in range(0, length, 3):
            packed = 1600 * values[i] + 40 * values[i + 1] + values[i + 2] + 1
            out += [packed // 256, packed % 256]
        out.append(_UNLATCH)
    rest = text[length:]
    i = 0
    while i < len(rest):
        if rest[i : i + 2].isdigit() and len(rest[i : i + 2]) == 2 and rest[i : i + 2].isascii():
            out.append(130 + int(rest[i : i + 2]))
            i += 2
        else:
            out.append(ord(rest[i]) + 1)
            i += 1
    return out


@dataclass(frozen=True)
class Symbol:
    """A Data Matrix symbol: ``modules[row][col]`` is True for a dark module (no quiet zone)."""

    size: int
    modules: tuple[tuple[bool, ...], ...]
    data: tuple[int, ...]
    """The data codewords (padding included), for checks such as "the header is C40"."""


def _pad(data: list[int], capacity: int) -> list[int]:
    out = list(data)
    if len(out) < capacity:
        out.append(_PAD)
    while len(out) < capacity:
        position = len(out) + 1
        value = _PAD + (149 * position) % 253 + 1
        out.append(value if value <= 254 else value - 254)
    return out


def _placement(nrow: int, ncol: int, words: list[int]) -> list[list[bool]]:
    grid: list[list[int]] = [[-1] * ncol for _ in range(nrow)]

    def module(row: int, col: int, index: int, bit: int) -> None:
        if row < 0:
            row += nrow
            col += 4 - ((nrow + 4) % 8)
        if col < 0:
            col += ncol
            row += 4 - ((ncol + 4) % 8)
        grid[row][col] = 1 if words[index] & (1 << (8 - bit)) else 0

    def utah(row: int, col: int, index: int) -> None:
        for bit, (dr, dc) in enumerate(((-2, -2), (-2, -1), (-1, -2), (-1, -1), (-1, 0), (0, -2), (0, -1), (0, 0)), 1):
            module(row + dr, col + dc, index, bit)

    def corner(index: int, cells: tuple[tuple[int, int], ...]) -> None:
        for bit, (r, c) in enumerate(cells, 1):
            module(r, c, index, bit)

    n, m = nrow, ncol
    corners = {
        1: ((n - 1, 0), (n - 1, 1), (n - 1, 2), (0, m - 2), (0, m - 1), (1, m - 1), (2, m - 1), (3, m - 1)),
        2: ((n - 3, 0), (n - 2, 0), (n - 1, 0), (0, m - 4), (0, m - 3), (0, m - 2), (0, m - 1), (1, m - 1)),
        3: ((n - 3, 0), (n - 2, 0), (n - 1, 0), (0, m - 2), (0, m - 1), (1, m - 1), (2, m - 1), (3, m - 1)),
        4: ((n - 1, 0), (n - 1, m - 1), (0, m - 3), (0, m - 2), (0, m - 1), (1, m - 3), (1, m - 2), (1, m - 1)),
    }
    index, row, col = 0, 4, 0
    while True:
        if row == n and col == 0:
            corner(index, corners[1])
            index += 1
        if row == n - 2 and col == 0 and m % 4:
            corner(index, corners[2])
            index += 1
        if row == n - 2 and col == 0 and m % 8 == 4:
            corner(index, corners[3])
            index += 1
        if row == n + 4 and col == 2 and not m % 8:
            corner(index, corners[4])
            index += 1
        while True:
            if row < n and col >= 0 and grid[row][col] == -1:
                utah(row, col, index)
                index += 1
            row -= 2
            col += 2
            if not (row >= 0 and col < m):
                break
        row += 1
        col += 3
        while True:
            if row >= 0 and col < m and grid[row][col] == -1:
                utah(row, col, index)
                index += 1
            row += 2
            col -= 2
            if not (row < n and col >= 0):
                break
        row += 3
        col += 1
        if not (row < n or col < m):
            break
    if grid[n - 1][m - 1] == -1:
        grid[n - 1][m - 1] = grid[n - 2][m - 2] = 1
        grid[n - 1][m - 2] = grid[n - 2][m - 1] = 0
    return [[cell == 1 for cell in line] for line in grid]


def encode(text: str, *, c40_length: int = 0) -> Symbol:
    """The smallest square symbol holding ``text`` (C40 for its first ``c40_length`` characters)."""
    data = codewords(text, c40_length)
    chosen = next((row for row in _SYMBOLS if len(data) <= row[1]), None)
    if chosen is None:
        raise ValueError("the text is too long for a Data Matrix up to 104×104")
    size, capacity, ecc_total, region, per_side, blocks = chosen
    padded = _pad(data, capacity)
    ecc_per_block = ecc_total // blocks
    words = padded + [0] * ecc_total
    for block in range(blocks):
        block_data = padded[block::blocks]
        for i, value in enumerate(_ecc(block_data, ecc_per_block)):
            words[capacity + block + i * blocks] = value
    mapping = per_side * region
    bits = _placement(mapping, mapping, words)
    rows: list[list[bool]] = []
    for y in range(mapping):
        if y % region == 0:
            rows.append([x % 2 == 0 for x in range(size)])
        line: list[bool] = []
        for x in range(mapping):
            if x % region == 0:
                line.append(True)
            line.append(bits[y][x])
            if x % region == region - 1:
                line.append(y % 2 == 0)
        rows.append(line)
        if y % region == region - 1:
            rows.append([True] * size)
    return Symbol(size=size, modules=tuple(tuple(r) for r in rows), data=tuple(padded))
