"""Per-language heuristics (data_pipes.web.lang): real short documents in Chinese, Japanese, Thai, German and
French are kept with their language's rules and judged as expected by each rule; an unknown language falls back
as declared; English keeps datatrove's rules."""

from __future__ import annotations

import polars as pl
import pytest

from data_pipes.web.c4 import C4Params
from data_pipes.web.fineweb import FineWebParams
from data_pipes.web.gopher_quality import GopherQualityParams
from data_pipes.web.gopher_repetition import GopherRepetitionParams
from data_pipes.web.heuristic_chain import heuristic_chain, heuristic_chain_by_language
from data_pipes.web.lang.rules import LanguageOverride, Sections, normalise_lang, resolve
from data_pipes.web.lang.scripts import dominant_script
from data_pipes.web.lang.segmenters import segment

ZH = (
    "Debian 是一个由志愿者组成的社区开发的自由操作系统。它使用 Linux 内核以及许多来自 GNU 项目的基本工具。"
    "管理员可以通过 APT 软件包管理系统安装和升级软件，而不必手动处理依赖关系。"
    "每个稳定版本在发布之前都会经过长时间的测试，因此它在服务器上非常受欢迎。\n"
    "社区的成员来自世界各地，他们在邮件列表上讨论问题，并且共同维护成千上万个软件包。"
    "新用户可以阅读手册，了解如何配置网络、备份数据和保护系统的安全。"
    "如果遇到错误，用户可以在错误跟踪系统中提交报告，开发者会尽快回复。"
)
JA = (
    "Debian はボランティアのコミュニティによって開発されている自由なオペレーティングシステムです。"
    "Linux カーネルと GNU プロジェクトの多くの基本的なツールを使っています。"
    "管理者は APT というパッケージ管理システムを使って、依存関係を手で解決することなくソフトウェアをインストールできます。"
    "安定版は公開される前に長い期間テストされるので、サーバーでよく使われています。\n"
    "コミュニティのメンバーは世界中にいて、メーリングリストで問題を話し合いながら、何万ものパッケージを一緒に管理しています。"
    "新しいユーザーは手引きを読んで、ネットワークの設定やデータのバックアップの方法を学ぶことができます。"
    "バグを見つけたときは、バグ追跡システムに報告を送ると、開発者がすぐに返事をします。"
)
TH = "\n".join(
    [
        "เดเบียนเป็นระบบปฏิบัติการเสรีที่พัฒนาโดยชุมชนอาสาสมัครจากทั่วโลก",
        "ผู้ดูแลระบบสามารถติดตั้งและปรับปรุงซอฟต์แวร์ได้อย่างง่ายดายด้วยระบบจัดการแพ็กเกจ",
        "รุ่นเสถียรแต่ละรุ่นจะได้รับการทดสอบเป็นเวลานานก่อนที่จะเผยแพร่สู่สาธารณะ",
        "ด้วยเหตุนี้ระบบนี้จึงเป็นที่นิยมมากในการใช้งานบนเครื่องแม่ข่ายขององค์กร",
        "สมาชิกของชุมชนพูดคุยเรื่องปัญหาต่าง ๆ ในรายการส่งจดหมายและช่วยกันดูแลแพ็กเกจหลายพันชุด",
        "ผู้ใช้ใหม่สามารถอ่านคู่มือเพื่อเรียนรู้วิธีตั้งค่าเครือข่ายและสำรองข้อมูลที่สำคัญ",
        "เมื่อพบข้อผิดพลาด ผู้ใช้สามารถส่งรายงานไปยังระบบติดตามข้อผิดพลาดและนักพัฒนาจะตอบกลับโดยเร็ว",
    ]
)
DE = "\n".join(
    [
        "Debian ist ein freies Betriebssystem, das von einer Gemeinschaft aus Freiwilligen entwickelt wird.",
        "Es verwendet den Linux-Kernel und viele grundlegende Werkzeuge aus dem GNU-Projekt.",
        "Administratoren können mit dem Paketsystem Programme installieren, ohne Abhängigkeiten von Hand aufzulösen.",
        "Jede stabile Version wird vor der Veröffentlichung lange getestet, daher ist sie auf Servern beliebt.",
        "Die Mitglieder der Gemeinschaft diskutieren auf Mailinglisten und pflegen gemeinsam tausende Pakete.",
        "Neue Benutzer lesen das Handbuch, um zu lernen, wie man das Netzwerk einrichtet und Daten sichert.",
    ]
)
FR = "\n".join(
    [
        "Debian est un système d'exploitation libre développé par une communauté de bénévoles.",
        "Il utilise le noyau Linux et de nombreux outils de base issus du projet GNU.",
        "Les administrateurs installent des logiciels avec le système de paquets, sans résoudre les dépendances à la main.",
        "Chaque version stable est testée longuement avant sa publication, c'est pourquoi elle est appréciée sur les serveurs.",
        "Les membres de la communauté discutent sur les listes de diffusion et maintiennent des milliers de paquets.",
        "Les nouveaux utilisateurs lisent le manuel pour apprendre à configurer le réseau et à sauvegarder leurs données.",
    ]
)
EN = "\n".join(
    [
        "The river runs past the old mill and through the valley, where farmers grow wheat.",
        "In spring the water rises with the melting snow, and the village children gather to watch it.",
        "Most of the houses were built with stone from the hills, which gives the streets a warm colour.",
        "Visitors often stay at the inn near the bridge, a building open to travellers since 1820.",
        "The museum keeps records of the floods, the harvests and the families that have lived here.",
        "On market days the square fills with stalls selling bread, cheese, honey and vegetables.",
    ]
)
DOCS = {"zh": ZH, "ja": JA, "th": TH, "de": DE, "fr": FR}


@pytest.fixture(scope="module")
def base() -> Sections:
    return Sections(GopherQualityParams(), GopherRepetitionParams(), C4Params(), FineWebParams())


def run(texts: list[str], langs: list[str | None], base: Sections, **kw) -> tuple[list, list]:
    out, reasons, keys = heuristic_chain_by_language(
        pl.Series(texts), pl.Series(langs, dtype=pl.String), base, **kw
    )
    return reasons.to_list(), keys.to_list()


def test_segmenters_give_words_of_unspaced_scripts() -> None:
    toks = segment(pl.Series([ZH, JA, TH]), "zh")["tok"].to_list()
    assert {"志愿者", "操作系统", "软件包"} <= set(toks)
    ja = segment(pl.Series([JA]), "ja")["tok"].to_list()
    assert {"コミュニティ", "の", "を", "は", "。"} <= set(ja)
    th = segment(pl.Series([TH]), "th")["tok"].to_list()
    assert {"ระบบ", "และ", "ที่", "ของ"} <= set(th) and "" not in th
    fr = segment(pl.Series(["l'eau d'un système"]), "elision")["tok"].to_list()
    assert fr == ["l'", "eau", "d'", "un", "système"]
    # German keeps hyphenated compounds whole, as spaCy's German tokenizer does; Russian splits them
    assert segment(pl.Series(["die E-Mail-Adresse"]), "compound")["tok"].to_list() == [
        "die",
        "E-Mail-Adresse",
    ]
    assert segment(pl.Series(["E-Mail"]), "plain")["tok"].to_list() == ["E", "-", "Mail"]
    # Polish splits section numbers and every hyphen, as spaCy's Polish tokenizer (datatrove's) does
    assert segment(pl.Series(["Rozdział 6.2.7: UTF-8"]), "polish")["tok"].to_list() == (
        ["Rozdział", "6", ".", "2", ".", "7", ":", "UTF", "-", "8"]
    )
    # Arabic and Persian: a full stop splits off an Arabic word, not a Latin one (as spaCy's tokenizers do)
    assert segment(pl.Series(["هذا نص. ثبّت paket."]), "arabic")["tok"].to_list() == [
        "هذا",
        "نص",
        ".",
        "ثبّت",
        "paket.",
    ]
    # German "im" is a word (and a stop word), not English "I'm" spelt without its apostrophe
    assert segment(pl.Series(["im Haus"]), "plain")["tok"].to_list() == ["im", "Haus"]
    assert segment(pl.Series(["im Haus"]), "en")["tok"].to_list() == ["i", "m", "Haus"]


def test_each_language_keeps_its_real_document(base: Sections) -> None:
    reasons, keys = run(list(DOCS.values()), list(DOCS), base)
    assert reasons == [None] * len(DOCS)
    assert keys == list(DOCS)


@pytest.mark.parametrize(
    ("lang", "english_reason"),
    [
        ("zh", "gopher_quality_min_words"),  # no spaces: a paragraph is one English "word"
        ("ja", "gopher_quality_min_words"),
        ("th", "gopher_quality_min_words"),
        ("de", "gopher_quality_stop_words"),  # none of "the, be, to, of, and, that, have, with"
        ("fr", "gopher_quality_stop_words"),
    ],
)
def test_english_rules_misjudge_them(base: Sections, lang: str, english_reason: str) -> None:
    s = base
    _, reasons = heuristic_chain(
        pl.Series([DOCS[lang]]), s.gopher_quality, s.gopher_repetition, s.c4, s.fineweb
    )
    assert reasons.to_list() == [english_reason]


def test_stop_words_are_the_languages_own(base: Sections) -> None:
    # German prose read as French or Chinese lacks their stop words; French read as German too
    reasons, _ = run([DE, FR], ["fr", "de"], base)
    assert reasons == ["gopher_quality_stop_words", "gopher_quality_stop_words"]
    stripped = (
        ZH.replace("的", "之").replace("在", "于").replace("是", "乃").replace("和", "与").replace("了", "")
    )
    stripped = stripped.replace("有", "具").replace("也", "亦").replace("人", "者").replace("中", "内")
    stripped = stripped.replace("由", "经").replace("而", "却")
    assert run([stripped], ["zh"], base)[0] == ["gopher_quality_stop_words"]


def test_alpha_words_rule_per_language(base: Sections) -> None:
    # Japanese table of numbers: too few words with a letter (min share 0.759)
    numbers = JA + "\n" + "、".join(str(i) for i in range(200)) + "。"
    assert run([numbers], ["ja"], base)[0] == ["gopher_quality_alpha_words"]


def test_repetition_c4_and_fineweb_per_language(base: Sections) -> None:
    first_zh = ZH.split("\n")[0]
    repeated = "\n".join([first_zh] * 6)
    assert run([repeated], ["zh"], base)[0] == ["gopher_repetition_dup_line_frac"]
    # C4 per language: a Chinese line ending in 。 is a sentence end; without it, lines are removed
    no_stops = ZH.replace("。", "，")
    out, reasons, _ = heuristic_chain_by_language(pl.Series([no_stops]), pl.Series(["zh"]), base)
    assert reasons.to_list() == ["c4_too_few_sentences"]
    # Thai writes no sentence punctuation: C4's end-of-line rule is off for it, FineWeb's line rule too
    assert run([TH], ["th"], base)[0] == [None]
    # FineWeb's newline ratio is per language (German: 0.152 newlines per word)
    listy = "\n".join(
        [
            "Freiwillige entwickeln das Betriebssystem.",
            "Debian benutzt zahlreiche Standardwerkzeuge.",
            "Administratoren installieren Programme bequem.",
            "Abhängigkeiten werden automatisch aufgelöst.",
            "Stabile Versionen werden gründlich getestet.",
            "Serverbetreiber schätzen diese Zuverlässigkeit.",
            "Entwickler diskutieren auf Mailinglisten.",
            "Sie pflegen tausende Softwarepakete.",
            "Neulinge studieren das Administratorhandbuch.",
            "Es erklärt die Netzwerkkonfiguration.",
            "Datensicherungen schützen vor Datenverlust.",
            "Fehlerberichte landen im Fehlerverfolgungssystem.",
            "Entwickler antworten meistens schnell.",
            "Ian Murdock gründete Debian.",
        ]
    )  # one newline per five words: over German's 0.152, under English's 0.3 (FineWeb-2's figures)
    assert run([listy], ["de"], base, thresholds="fineweb2")[0] == ["fineweb_list_ratio"]
    relaxed = {"de": LanguageOverride(fineweb={"new_line_ratio": 0.3})}
    assert run([listy], ["de"], base, overrides=relaxed, thresholds="fineweb2")[0] == [None]


def test_unknown_language_falls_back_as_declared(base: Sections) -> None:
    # Swahili has no tuned row; Latin script fallback: no stop-word rule, the script's word-length bounds
    sw = (
        "Debian ni mfumo wa uendeshaji huru unaotengenezwa na jumuiya ya watu wanaojitolea duniani kote.\n"
        "Wasimamizi wanaweza kusakinisha programu kwa kutumia mfumo wa vifurushi bila kutatua utegemezi kwa mkono.\n"
        "Kila toleo thabiti hujaribiwa kwa muda mrefu kabla ya kutolewa, kwa hiyo linapendwa sana kwenye seva.\n"
        "Wanachama wa jumuiya hujadiliana kwenye orodha za barua pepe na hutunza maelfu ya vifurushi pamoja.\n"
        "Watumiaji wapya husoma mwongozo ili kujifunza jinsi ya kusanidi mtandao na kuhifadhi data zao.\n"
        "Wakipata hitilafu, watumiaji hutuma ripoti kwenye mfumo wa kufuatilia hitilafu na watengenezaji hujibu haraka."
    )
    reasons, keys = run([sw, ZH, sw], ["sw", None, ""], base)
    assert keys == ["script:Latn", "script:Hani", "script:Latn"]
    assert reasons == [None, None, None]
    assert run([sw], ["sw"], base, unknown_lang="english")[0] == ["gopher_quality_stop_words"]
    reasons, keys = run([sw, EN], ["sw", "en"], base, unknown_lang="drop")
    assert reasons == ["heuristic_unknown_language", None] and keys == ["drop", "en"]
    # an override makes a language known, with its own fields
    override = {"sw": LanguageOverride(gopher_quality={"stop_words": ["na", "wa", "ya", "kwa"]})}
    reasons, keys = run(
        [sw, sw.replace(" na ", " ").replace(" wa ", " ")], ["sw", "sw"], base, overrides=override
    )
    assert keys == ["sw", "sw"]
    assert reasons == [None, None]
    tight = {"sw": LanguageOverride(gopher_quality={"stop_words": ["zzz"], "min_stop_words": 1})}
    assert run([sw], ["SW"], base, overrides=tight)[0] == ["gopher_quality_stop_words"]


def test_english_keeps_datatrove_rules(base: Sections) -> None:
    rules = resolve("en", base, {})
    assert rules is not None and rules.segmenter == "en" and rules.sections == base
    texts = [EN, "only a few words here", " ".join(["bread cheese honey market river stone"] * 12)]
    want = heuristic_chain(
        pl.Series(texts), base.gopher_quality, base.gopher_repetition, base.c4, base.fineweb
    )
    out, reasons, _ = heuristic_chain_by_language(pl.Series(texts), pl.Series(["en", "en-US", "eng"]), base)
    assert (
        reasons.to_list()
        == want[1].to_list()
        == [None, "gopher_quality_min_words", "gopher_quality_stop_words"]
    )
    assert out.to_list() == want[0].to_list()


def test_language_codes_and_scripts() -> None:
    assert [normalise_lang(c) for c in ("pt-BR", "ZH_Hant", "deu", "no", None, "")] == [
        "pt",
        "zh",
        "de",
        "nb",
        "",
        "",
    ]
    assert dominant_script(pl.Series([ZH, JA, TH, DE, "", "12 34"])).to_list() == [
        "Hani", "Kana", "Thai", "Latn", "", ""
    ]  # fmt: skip


def test_override_typo_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"gopher_quality\.min_stop_word: Extra inputs are not permitted"):
        LanguageOverride(gopher_quality={"min_stop_word": 3})
