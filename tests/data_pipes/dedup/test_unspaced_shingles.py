"""MinHash shingles of languages written without spaces: Chinese and Japanese near copies are caught."""

from __future__ import annotations

import numpy as np

from data_pipes.dedup.minhash import minhash_dedup
from data_pipes.dedup.normalise import normalise_text
from data_pipes.dedup.params import MinHashParams
from data_pipes.dedup.shingles import unspaced_segmenter, word_split
from data_pipes.dedup.signatures import EMPTY, minhash_signatures

ZH = (
    "这座古老的石桥建于十四世纪，横跨城市东边的河流，是当地最重要的交通要道之一。几百年来，商人们每天清晨赶着马车"
    "从桥上经过，把粮食、布匹和瓷器运到西边的市场。桥的两侧各有十二根石柱，柱子上刻着狮子和莲花的图案。"
    "上世纪八十年代，政府对石桥进行了全面修复，并在桥头建了一座小型博物馆，向游客介绍它的历史。"
)
ZH_OTHER = (
    "学习一门新的编程语言时，最好的办法是先写一些小程序，再慢慢阅读别人的代码。遇到不懂的错误信息，"
    "可以先在文档里查找，然后在论坛上提问，并附上完整的报错内容和运行环境。坚持每天练习一个小时，"
    "三个月后你就能独立完成简单的项目，也会更清楚自己下一步应该学习什么。"
)
JA = (
    "この古い石橋は十四世紀に建てられ、町の東を流れる川に架かっている。何百年もの間、商人たちは毎朝馬車で橋を"
    "渡り、米や布や陶器を西の市場へ運んだ。橋の両側には十二本の石柱が立ち、柱には獅子と蓮の花が刻まれている。"
    "八十年代に市が橋を全面的に修復し、橋のたもとに小さな博物館を建てて、訪れる人に橋の歴史を紹介している。"
)
EN = (
    "The old stone bridge was built in the fourteenth century and crosses the river on the east side of the "
    "town. For hundreds of years merchants drove their carts over it every morning, carrying grain, cloth and "
    "porcelain to the market in the west."
)


def _one_word_changed(text: str) -> str:
    out = text.replace("十四世", "十五世")
    assert out != text
    return out


def test_chinese_and_japanese_near_copies_are_caught() -> None:
    # the user's case: a ~140-character paragraph and a copy with one word changed, with and without `lang`
    texts = [ZH, _one_word_changed(ZH), ZH_OTHER, JA, _one_word_changed(JA)]
    for langs in (["zh", "zh", "zh", "ja", "ja"], None):
        sigs = minhash_signatures(texts, MinHashParams(), langs)
        assert (sigs != EMPTY).all()  # one "word" per paragraph used to give no shingle at all
        agree = (sigs[:, None, :] == sigs[None, :, :]).mean(axis=2)
        assert agree[0, 1] > 0.72 and agree[3, 4] > 0.72 and agree[0, 2] < 0.1 and agree[0, 3] < 0.1
    result = minhash_dedup([texts])
    assert result.keep[0].tolist() == [True, False, True, True, False]


def test_language_picks_segmenter_and_spaced_text_is_unchanged() -> None:
    texts = [ZH, JA, EN, "Привет мир это пример текста", ZH]
    assert unspaced_segmenter(texts) == ["zh", "ja", None, None, "zh"]
    # a given `lang` decides; langid's codes ("zho_Hans") are normalised; empty falls back to the script
    assert unspaced_segmenter(texts, ["zho_Hans", "ja", "en", "ru", "fr"]) == ["zh", "ja", None, None, None]
    assert unspaced_segmenter(texts, [None, "", "", "", "th"]) == ["zh", "ja", None, None, "th"]
    normalised = [normalise_text(t, collapse=False) for t in texts]
    split = word_split(normalised, ["zh", "ja", "en", "ru", None])
    assert split[2:4] == normalised[2:4]  # spaced languages: the same text, hence the same shingles as before
    assert len(split[0].split()) > 50 and "".join(split[0].split()) == "".join(normalised[0].split())
    assert len(split[1].split()) > 50 and "".join(split[1].split()) == "".join(normalised[1].split())


def test_english_pair_behaves_as_before() -> None:
    near = EN.replace("fourteenth", "fifteenth")
    far = EN.replace("merchants drove their carts", "pilgrims walked").replace("grain, cloth", "candles")
    texts = [EN, near, far]
    plain = minhash_signatures(texts, MinHashParams())
    assert np.array_equal(plain, minhash_signatures(texts, MinHashParams(), ["en", "en", "en"]))
    assert minhash_dedup([texts]).keep[0].tolist()[:2] == [True, False]
