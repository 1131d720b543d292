"""The `calibrated` threshold table (data_pipes.web.lang.calibrate / calibrated.py): the quantile method on
small real paragraphs, the table's shape, and the node's `thresholds` param choosing FineWeb-2's figures or the
calibrated ones."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest
from pydantic import ValidationError

from data_pipes.web.c4 import C4Params
from data_pipes.web.fineweb import FineWebParams
from data_pipes.web.gopher_quality import GopherQualityParams
from data_pipes.web.gopher_repetition import GopherRepetitionParams
from data_pipes.web.heuristic_chain import heuristic_chain_by_language
from data_pipes.web.lang.calibrate import (
    FIELDS,
    calibrate,
    dropped_share,
    metrics,
    page_half,
)
from data_pipes.web.lang.calibrated import CALIBRATED
from data_pipes.web.lang.rules import Sections
from data_pipes.web.lang.table import LANGS, figures
from tasks.web_heuristics import HeuristicParams

# a Russian page with a shell listing: 125 of its 166 words hold a letter (0.753), below English's 0.8
RU_LISTING = """\
Debian — это свободная операционная система, которую разрабатывает сообщество добровольцев со всего мира.
Администраторы устанавливают и обновляют программы с помощью системы управления пакетами APT, не разрешая \
зависимости вручную.
Каждый стабильный выпуск долго тестируется перед публикацией, поэтому система очень популярна на серверах.
Участники сообщества обсуждают вопросы в списках рассылки и вместе поддерживают тысячи пакетов.
Новые пользователи читают руководство, чтобы узнать, как настроить сеть и сохранить важные данные.
Например, чтобы назначить адрес и открыть порт веб-сервера, выполните следующие команды:
# ip addr add 192.168.0.10/24 dev eth0
# ip route add default via 192.168.0.1
# chmod 0644 /etc/apt/sources.list
# ss -tlnp | grep :80
# ip addr add 10.0.0.2/8 dev eth1
# ip addr add 172.16.0.2/12 dev eth2
# chown 1000:1000 /srv/www
# seq 1 10
# apt install apache2
Если вы нашли ошибку, отправьте отчёт в систему отслеживания ошибок, и разработчики быстро ответят."""
HALVES = [0, 0, 1]  # sha256(key)[0] & 1
EN_PROSE = (
    "Debian is a free operating system developed by a community of volunteers from all over the world. "
    "Administrators install and upgrade software with the APT package manager, without resolving "
    "dependencies by hand. Each stable release is tested for a long time before it is published."
)


@pytest.fixture
def base() -> Sections:
    return Sections(GopherQualityParams(), GopherRepetitionParams(), C4Params(), FineWebParams())


def test_thresholds_param_picks_the_table(base: Sections) -> None:
    """The Russian listing is one English's rules drop; FineWeb-2's Russian minimum (0.713) keeps it, the
    threshold matched to English's quantile drops it, as English does."""
    assert figures("ru", "fineweb2") == LANGS["ru"]
    assert figures("ru", "calibrated").min_alpha_words_ratio == CALIBRATED["ru"]["min_alpha_words_ratio"]
    texts, langs = pl.Series([RU_LISTING]), pl.Series(["ru"])
    _, fw2, _ = heuristic_chain_by_language(texts, langs, base, thresholds="fineweb2")
    _, cal, _ = heuristic_chain_by_language(texts, langs, base, thresholds="calibrated")
    _, as_en, _ = heuristic_chain_by_language(texts, pl.Series(["xx"]), base, "english")
    assert fw2.to_list() == [None]
    assert cal.to_list() == as_en.to_list() == ["gopher_quality_alpha_words"]
    assert HeuristicParams().thresholds == "calibrated"
    with pytest.raises(ValidationError, match="thresholds"):
        HeuristicParams(thresholds="fineweb")  # type: ignore[arg-type]


def test_calibrated_table_names_known_fields() -> None:
    names = {f.name for f in FIELDS}
    for lang, row in CALIBRATED.items():
        assert lang in LANGS and set(row) <= names, (lang, row)
        fig = figures(lang, "calibrated")
        # only the calibrated fields differ from FineWeb-2's
        changed = {
            k for k, v in dataclasses.asdict(fig).items() if v != dataclasses.asdict(LANGS[lang])[k]
        } - {"source"}
        assert changed <= {name.partition(":")[0] for name in row}


def test_quantile_matching_on_real_paragraphs() -> None:
    """English: prose (kept) and a listing (dropped at 0.8), half each; Russian: its listing and its prose,
    half each: the matched threshold drops the same half, between the two."""
    en_listing = EN_PROSE + "\n" + RU_LISTING.split("\n", 6)[6]
    english = metrics(pl.Series([EN_PROSE, en_listing] * 5), "en")
    assert dropped_share(english["alpha_words_ratio"], "min", 0.8) == 0.5
    ru_prose = RU_LISTING.split("\n#")[0]
    russian = metrics(pl.Series([ru_prose, RU_LISTING] * 5), "plain")
    low, high = sorted(set(russian["alpha_words_ratio"].to_list()))
    table, shares = calibrate(
        english, {"ru": russian, "th": russian}, lambda lang, f: 0.0 if lang == "th" else 0.7
    )
    assert shares["min_alpha_words_ratio"] == 0.5
    t = table["ru"]["min_alpha_words_ratio"]
    assert t == round((low + high) / 2, 3) and dropped_share(russian["alpha_words_ratio"], "min", t) == 0.5
    # English's word-length bounds drop none of its documents: no quantile to match, FineWeb-2's figure stays
    assert set(table["ru"]) == {"min_alpha_words_ratio"}
    assert "th" not in table  # a check FineWeb-2 switched off (0) stays off
    few, _ = calibrate(english, {"ru": russian.head(9)}, lambda lang, f: 0.7)
    assert few == {}  # fewer than 10 measured documents: FineWeb-2's figures


def test_page_half_is_fixed() -> None:
    """A page's half depends only on its path without the language folder (SHA-256), so translations of a
    page fall in the same half, on any machine."""
    assert [page_half(k) for k in ("apt.html", "index.html", "sect.apt-get.html")] == HALVES
