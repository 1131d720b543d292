"""English word tokenisation that emulates spaCy's blank-English tokenizer, which datatrove uses for English.

The text is cut on whitespace in polars; only the *distinct* non-trivial chunks of a shard (those that are
not plain letters or plain digits) go through a prefix/suffix/infix splitter modelled on spaCy's
algorithm, and the result is joined back, so the cost is per distinct chunk, not per document (spaCy keeps
the same kind of cache).

Where we depart from spaCy (measured in `benchmarks/web_heuristics.py`):
- character classes are Unicode properties (`\\p{Ll}`, `\\p{Lu}`, `\\p{L}`, `\\p{So}`) instead of spaCy's
  explicit lists;
- special cases: contractions are split by rule (`n't`, `'ll`, `'re`, `'ve`, `'d`, `'m` after letters; a
  short list of apostrophe-less forms such as `dont`), plus a short list of abbreviations kept whole;
  spaCy's ~1,300 exact entries (times like `10am`, emoticons) are not reproduced;
- whitespace tokens (spaCy keeps runs such as a second space) are never produced; datatrove strips them
  anyway."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import polars as pl
import regex

# spaCy's list, plus the sentence and clause marks of scripts it lists none for (Devanagari ॥, Khmer ។ ៕,
# Myanmar ၊ ။, Ethiopic ። ፣ ፤, Armenian ։), so they split off a word and end a sentence there too
_PUNCT = r"…,:;!?¿؟¡()\[\]{}<>_#*&。？！，、；：～·।،۔؛٪॥។៕၊။።፣፤։"
_QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉⟦⟧"
_CURRENCY = "$£€¥฿₽﷼₠-₿"
# spaCy counts letters of uncased scripts (Arabic, Hebrew, Hangul, ...) as both lower and upper case; its
# lists hold whole script blocks (Tamil, Devanagari, Bengali ...), vowel signs and viramas included, so a
# combining mark (\p{M}: "ஒன்று" ends in the vowel sign U+0BC1) counts as a letter of either case: a word
# ending in one still gives up its final full stop ("ஒன்று." -> "ஒன்று" ".")
_LOWER = r"\p{Ll}\p{Lo}\p{M}"
_UPPER = r"\p{Lu}\p{Lo}\p{M}"
_UNITS = (
    "km²|km³|km|m²|m³|m/s|mm²|mm³|mm|mg|mbar|mb|mph|m|dm²|dm³|dm|cm²|cm³|cm|ha|µm|µg|nm|yd|in|ft|kg|km/h|kmh|g|t|lb|oz"
    "|hPa|Pa|MB|kb|KB|gb|GB|tb|TB|T|G|M|K|%"
)
_PREFIX = regex.compile(
    rf"^(?:§|%|=|—|–|\+(?![0-9])|\.\.+|…|US\$|C\$|A\$|[{_PUNCT}]|[{regex.escape(_QUOTES)}]|[{_CURRENCY}]|\p{{So}})"
)
_SUFFIX = regex.compile(
    rf"(?:…|[{_PUNCT}]|\.\.+|[{regex.escape(_QUOTES)}]|\p{{So}}|['’][sS]|—|–|(?<=[0-9])\+"
    rf"|(?<=°[FfCcKk])\.|(?<=[0-9])(?:US\$|C\$|A\$|[{_CURRENCY}])|(?<=[0-9])(?:{_UNITS})"
    # spaCy joins its punctuation list with "|" and puts it in this class, so "|" counts as punctuation here
    rf"|(?<=[0-9{_LOWER}%²\-+|{_PUNCT}{regex.escape(_QUOTES)}])\.|(?<=[{_UPPER}][{_UPPER}])\.)$",
    # matched backwards from the end: same matches as a forward search on this corpus, five times faster
    flags=regex.REVERSE | regex.V0,
)
_INFIX_TEMPLATE = (
    rf"\.\.+|…|\p{{So}}|(?<=[0-9])[+\-*^](?=[0-9-])|(?<=[{_LOWER}'\"”“`‘´’])\.(?=[{_UPPER}'\"”“`‘´’])"
    r"|(?<=\p{L}),(?=\p{L})|(?<=[\p{L}0-9])(?:HYPHENS)(?=\p{L})|(?<=[\p{L}0-9])[:<>=/](?=\p{L})"
)
_INFIX = regex.compile(_INFIX_TEMPLATE.replace("HYPHENS", "---|--|——|-|–|—|~"))
# spaCy's German, Spanish, Dutch, Nordic ... tokenizers keep hyphenated compounds whole ("E-Mail", "apt-get")
_INFIX_COMPOUND = regex.compile(_INFIX_TEMPLATE.replace("HYPHENS", "---|--|——|–|—|~"))
# spaCy's Polish tokenizer has infixes of its own: any hyphen, and a full stop between a digit or letter and a
# digit or capital, so section numbers and versions split ("6.2.7" -> 6 . 2 . 7, "UTF-8" -> UTF - 8); FineWeb-2
# tuned Polish's alphabetic-word share on those tokens
_INFIX_POLISH = regex.compile(
    r"\.\.+|…|\p{So}|-|–|—|--|---|——|~|(?<=[0-9\p{L}])\.(?=[0-9\p{Lu}])|(?<=\p{L})[,!?](?=\p{L})"
    r"|(?<=\p{L})[:<>=/](?=\p{L})|(?<=\p{L})[\"”“`‘´’‚„»«)\](\[](?=[\-\p{L}])"
)
_URL = regex.compile(
    # like spaCy, a host-name label may hold any non-ASCII character (so "x）。y.gz" counts as a host name) but
    # neither starts nor ends with "_" or "-"; the top-level domain is lower-case or uncased letters
    r"^(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?"
    r"(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?[A-Za-z0-9\u00a1-\uffff]\.)+"
    rf"[{_LOWER}]{{2,63}}(?::\d{{2,5}})?(?:[/?#]\S*)?$"
)
_NEGATION = regex.compile(r"^(\p{L}+)(n['’]t)$")
_CLITIC = regex.compile(
    r"^((?i:i|you|he|she|it|we|they|who|what|where|when|why|how|there|that|this|these|those))"
    r"(['’](?:ll|re|ve|d|m|LL|RE|VE|D|M))$"
)
# apostrophe-less contractions spaCy splits (lower case; title case is derived)
_NO_APOSTROPHE = {
    "dont": ("do", "nt"), "cant": ("ca", "nt"), "wont": ("wo", "nt"), "didnt": ("did", "nt"),
    "doesnt": ("does", "nt"), "isnt": ("is", "nt"), "arent": ("are", "nt"), "wasnt": ("was", "nt"),
    "werent": ("were", "nt"), "couldnt": ("could", "nt"), "shouldnt": ("should", "nt"),
    "wouldnt": ("would", "nt"), "havent": ("have", "nt"), "hasnt": ("has", "nt"), "hadnt": ("had", "nt"),
    "aint": ("ai", "nt"), "cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"),
    "im": ("i", "m"), "ive": ("i", "ve"), "id": ("i", "d"), "youre": ("you", "re"), "youve": ("you", "ve"),
    "youll": ("you", "ll"), "youd": ("you", "d"), "theyre": ("they", "re"), "theyve": ("they", "ve"),
    "theyll": ("they", "ll"), "theyd": ("they", "d"), "weve": ("we", "ve"), "wed": ("we", "d"),
    "hes": ("he", "s"), "shes": ("she", "s"), "hed": ("he", "d"), "itll": ("it", "ll"), "itd": ("it", "d"),
    "thats": ("that", "s"), "theres": ("there", "s"), "whats": ("what", "s"), "whos": ("who", "s"),
    "wheres": ("where", "s"), "hows": ("how", "s"), "lets": ("let", "s"), "yall": ("y", "all"),
    "mustnt": ("must", "nt"), "neednt": ("need", "nt"), "shouldve": ("should", "ve"),
    "couldve": ("could", "ve"), "wouldve": ("would", "ve"), "mightve": ("might", "ve"),
    "mustve": ("must", "ve"),
}  # fmt: skip
_NO_APOSTROPHE |= {k.title(): (v[0].title(), v[1]) for k, v in _NO_APOSTROPHE.items()}
_NO_APOSTROPHE.pop("lets")  # spaCy keeps "lets" whole (it only splits "Let's")
_NO_APOSTROPHE.pop("Lets")
# abbreviations kept whole although they end in a splittable period
_ABBREVIATIONS = frozenset(
    # abbreviations, clitics, and emoticons (spaCy keeps them whole, even next to other punctuation)
    "e.g. i.e. E.g. I.e. a.m. p.m. vs. Mr. Mrs. Ms. Dr. St. Jr. Inc. Ltd. Co. Corp. Jan. Feb. Mar. Apr. "
    "Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec. Mt. Gen. Gov. Rep. Sen. Rev. Prof. U.S. U.K. vs e.g i.e "
    "Ph.D. a. b. c. d. e. f. g. h. i. j. k. l. m. n. o. p. q. r. s. t. u. v. w. x. y. z. Ala. Ariz. Ark. "
    "Calif. Colo. Conn. Del. Fla. Ga. Ill. Ind. Kan. Ky. La. Md. Mass. Mich. Minn. Miss. Mo. Mont. Neb. "
    "Nev. Okla. Ore. Pa. Tenn. Va. Wash. Wis. and/or 's 'S 'd 'll n't 'em 'cause '' -- :) :-) :)) (: (-: "
    "=) (= :] :-] [: [-: [= =] :} :-} 8) 8-) (-8 ;) ;-) (; (-; :( :-( :(( ): )-: =( >:( :') :'( :/ :-/ "
    "=/ =| :| :-| ]= =[ :1 :P :-P :p :-p :O :-O :o :-o :0 :-0 :() >:o :* :-* :3 :-3 =3 :> :-> :X :-X :x "
    ":-x :D :-D ;D ;-D =D xD XD 8D 8-D ^_^ ^__^ >.< >.> <.< ._. ;_; -_- -__- v.v V.V v_v V_V o_o o_O O_o "
    "O_O 0_o o_0 0_0 o.O O.o O.O o.o 0.0 o.0 0.o @_@ <3 <33 </3 (^_^) (-_-) (._.) (>_<) (*_*) ".split()
)


def _special(chunk: str) -> tuple[str, ...] | None:
    if chunk in _ABBREVIATIONS:
        return (chunk,)
    if chunk in _NO_APOSTROPHE:
        return _NO_APOSTROPHE[chunk]
    m = _NEGATION.match(chunk) or _CLITIC.match(chunk)
    if m is not None:
        return (m.group(1), m.group(2))
    return None


def _special_plain(chunk: str) -> tuple[str, ...] | None:
    """Specials of the language-neutral profile: kept-whole abbreviations and emoticons, no English clitics."""
    return (chunk,) if chunk in _ABBREVIATIONS else None


def _split_infixes(core: str, infix: regex.Pattern = _INFIX) -> list[str]:
    matches = list(infix.finditer(core))
    if not matches or _URL.match(core):
        return [core]
    out: list[str] = []
    start = 0
    for m in matches:
        if m.start() == 0:
            continue
        if m.start() != start:
            out.append(core[start : m.start()])
        if m.end() != m.start():
            out.append(core[m.start() : m.end()])
        start = m.end()
    if start < len(core):
        out.append(core[start:])
    return out


# frequent shapes whose split is known without running the affix loop: word + one punctuation mark, "(word",
# "word)"; the word must not be a special case itself
_FAST = regex.compile(
    r"^(?:(\p{L}[\p{L}\p{M}]*)([,;:!?)])|([\p{L}\p{M}]*[\p{Ll}\p{Lo}\p{M}]|[0-9]+)(\.)|(\()(\p{L}[\p{L}\p{M}]*)"
    r"|([0-9]+)([,;:]))$"
)


def _fast_split(chunk: str, english: bool = True) -> tuple[str, ...] | None:
    m = _FAST.match(chunk)
    if m is None or chunk in _ABBREVIATIONS:
        return None
    parts = tuple(g for g in m.groups() if g is not None)
    if english and any(p in _NO_APOSTROPHE for p in parts):
        return None
    return parts


@lru_cache(maxsize=1 << 20)
def split_chunk(chunk: str) -> tuple[str, ...]:
    """Split one whitespace-free chunk into tokens, spaCy style: prefixes, suffixes, then infixes."""
    fast = _fast_split(chunk)
    if fast is not None:
        return fast
    return _split_affixes(chunk, _special)


# French, Italian and Catalan elided articles and pronouns (spaCy's tokenizers for those languages split them
# off: "l'homme" -> "l'", "homme"); FineWeb-2's French stop words hold "l'" and "d'"
_ELISION = regex.compile(
    r"^((?i:qu|jusqu|lorsqu|puisqu|quoiqu|dell|dall|nell|sull|all|un|[ldjmnstc])['’])(\p{L}.*)$"
)


_ARABIC_LETTER = regex.compile(r"\p{Arabic}")


@lru_cache(maxsize=1 << 20)
def split_chunk_plain(
    chunk: str, elision: bool = False, compound: bool = False, arabic: bool = False, polish: bool = False
) -> tuple[str, ...]:
    """`split_chunk` without English's special cases (contractions, "dont", "im" -> "i" "m"), for the other
    space-delimited languages; with `elision`, an elided article or pronoun is split off its word; with
    `compound`, a hyphen between letters does not split ("E-Mail"); with `arabic`, a final full stop splits off
    only after an Arabic-script letter (spaCy's Arabic and Persian tokenizers keep "paket." whole); with
    `polish`, spaCy-Polish's infixes (`_INFIX_POLISH`)."""
    if arabic and len(chunk) > 1 and chunk.endswith(".") and not _ARABIC_LETTER.match(chunk[-2]):
        head = split_chunk_plain(chunk[:-1], elision, compound, arabic)
        return (*head[:-1], head[-1] + ".") if head else (chunk,)
    infix = _INFIX_POLISH if polish else _INFIX_COMPOUND if compound else _INFIX
    parts = _fast_split(chunk, english=False) or _split_affixes(chunk, _special_plain, infix)
    if not elision:
        return parts
    out: list[str] = []
    for part in parts:
        m = _ELISION.match(part)
        out.extend((m.group(1), m.group(2)) if m else (part,))
    return tuple(out)


def _split_affixes(
    chunk: str, special_fn: Callable[[str], tuple[str, ...] | None], infix: regex.Pattern = _INFIX
) -> tuple[str, ...]:
    special = special_fn(chunk)
    if special is not None:
        return special
    prefixes: list[str] = []
    suffixes: list[str] = []
    core = chunk
    while core:
        size = len(core)
        pre = _PREFIX.search(core)
        pre_len = pre.end() if pre else 0
        if pre_len and special_fn(core[pre_len:]) is not None:
            prefixes.append(core[:pre_len])
            core = core[pre_len:]
            break
        suf = _SUFFIX.search(core[pre_len:]) if pre_len < len(core) else None
        suf_len = len(suf.group()) if suf else 0
        if suf_len and special_fn(core[:-suf_len]) is not None:
            suffixes.append(core[-suf_len:])
            core = core[:-suf_len]
            break
        if pre_len and suf_len and pre_len + suf_len <= len(core):
            prefixes.append(core[:pre_len])
            suffixes.append(core[-suf_len:])
            core = core[pre_len:-suf_len]
        elif pre_len:
            prefixes.append(core[:pre_len])
            core = core[pre_len:]
        elif suf_len:
            suffixes.append(core[-suf_len:])
            core = core[:-suf_len]
        if len(core) == size or special_fn(core) is not None:
            break
    middle: list[str] = []
    if core:
        special = special_fn(core)
        middle = list(special) if special is not None else _split_infixes(core, infix)
    return _merge_specials([*prefixes, *middle, *reversed(suffixes)])


def _merge_specials(tokens: list[str]) -> tuple[str, ...]:
    """Re-join neighbours that spell a kept-whole special (spaCy re-merges them after splitting: `):`)."""
    if len(tokens) < 2:
        return tuple(tokens)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for width in (4, 3, 2):
            if i + width <= len(tokens) and "".join(tokens[i : i + width]) in _ABBREVIATIONS:
                out.append("".join(tokens[i : i + width]))
                i += width
                break
        else:
            out.append(tokens[i])
            i += 1
    return tuple(out)


# Python's str.isspace() also counts separators U+001C..U+001F as whitespace; Unicode's White_Space does not
_CHUNK = r"[^\s\x1c-\x1f]+"
_PLAIN = r"^(?:\p{L}[\p{L}\p{M}]*|[0-9]+)$"  # letters with their combining marks (Indic, Thai ...), or digits


PROFILES = ("en", "plain", "compound", "elision", "arabic", "polish")


def tokenize(texts: pl.Series, profile: str = "en") -> pl.DataFrame:
    """Tokenise a column: one row per token, `doc` (row index in `texts`, u32) and `tok`, in order.

    `profile`: "en" (spaCy English, datatrove's), "plain" (the same affix rules without English's special
    cases), "compound" ("plain" keeping hyphenated words whole) or "elision" ("compound" plus French /
    Italian / Catalan elision), "arabic" ("plain" where a final full stop splits off only after Arabic
    letters), "polish" ("plain" with spaCy-Polish's infixes: dotted numbers and every hyphen split)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown tokenizer profile {profile!r}: use one of {', '.join(PROFILES)}")
    plain = pl.col("chunk").str.contains(_PLAIN)
    if profile == "en":
        plain = plain & ~pl.col("chunk").is_in(list(_NO_APOSTROPHE))
    chunks = (
        pl.DataFrame({"chunk": texts.cast(pl.String).str.extract_all(_CHUNK)})
        .with_row_index("doc")
        .explode("chunk")
        .drop_nulls("chunk")
        .with_columns(plain=plain)
    )
    distinct = chunks.filter(~pl.col("plain"))["chunk"].unique()
    if profile == "en":
        split = split_chunk
    else:
        elision, compound, arabic = (
            profile == "elision",
            profile in ("compound", "elision"),
            profile == "arabic",
        )
        polish = profile == "polish"
        split = lambda c: split_chunk_plain(c, elision, compound, arabic, polish)  # noqa: E731
    # chunks never contain whitespace, so a space-joined string carries a chunk's tokens cheaply
    mapping = pl.DataFrame({"chunk": distinct, "toks": [" ".join(split(c)) for c in distinct]})
    return (
        chunks.join(mapping, on="chunk", how="left", maintain_order="left")
        .select(
            "doc", tok=pl.when(pl.col("plain")).then(pl.col("chunk")).otherwise(pl.col("toks")).str.split(" ")
        )
        .explode("tok")
        .drop_nulls("tok")
    )
