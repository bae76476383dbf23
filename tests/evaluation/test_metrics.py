"""Edge cases the reference evaluation code is known for; every expected value is derived by hand from the
reference semantics (LLaVA, lmms-eval, VLMEvalKit, ConvLLaVA, LLaVA-UHD v2), quirks included."""

import pytest

from loupe.errors import LoupeError
from loupe.evaluation import metrics as M


# --- EvalAI normaliser --------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("Two", "2"),                 # number words
    ("none", "0"),
    ("the cat.", "cat"),          # article dropped, trailing period stripped
    ("1,000", "1000"),            # word_tokenize deletes commas
    ("dont", "don't"),            # contractions
    ("Im", "im"),                 # capitalised dict keys never match after lower-casing
    ("somebody'd", "somebodyd"),  # the table's own typo
    ("3.14", "3.14"),             # a period followed by a digit stays
    ("1.", "1"),                  # typo'd look-behind: the period after a digit goes too
    ("yes.", "yes"),
    ("a man's", "man 's"),        # "'s" split off, article dropped
    ("What?", "what"),
    ("(cat)", "cat"),             # marks not next to a space become spaces
    ("x-y", "x y"),
    ("Left\tRight\n", "left right"),
])
def test_evalai_normalize(raw, expected):
    assert M.evalai_normalize(raw) == expected


@pytest.mark.parametrize("variant", M.VQA_VARIANTS)
def test_every_article_is_dropped(variant):
    # EvalAI's articles are exactly "a", "an", "the": each one alone and in a phrase
    for article in ("a", "an", "the"):
        assert M.vqa_normalize(f"{article} apple", variant) == "apple"
        assert M.vqa_normalize(f"An {article} apple", variant) == "apple"
    assert M.vqa_normalize("an", variant) == ""
    assert M.vqa_normalize("and anna", variant) == "and anna"  # words that only start like an article stay
    answers = ["apple"] * 10
    assert M.vqa_accuracy("an apple", answers, variant) == 1.0
    assert M.vqa_accuracy("An apple.", answers, variant) == 1.0


def test_period_strip_count_is_re_unicode():
    # PERIOD_STRIP.sub("", s, re.UNICODE): re.UNICODE == 32 is the count -> only 32 periods go
    assert M.evalai_normalize("a." * 40) == "a" * 32 + "a." * 8


def test_punctuation_variants():
    # lmms-eval VQAv2: no word_tokenize; a comma between digits makes every mark be deleted
    assert M.vqa_normalize("x-y 1,2", "lmms_eval_vqav2") == "xy 12"
    assert M.evalai_normalize("x-y 1,2") == "x y 12"  # commas already gone, so "-" becomes a space
    # EvalAI's comma regex allows several commas, VLMEvalKit's exactly one
    assert M.vqa_normalize("1,,2", "lmms_eval_vqav2") == "12"
    assert M.vqa_normalize("1,,2", "vlmevalkit") == "1 2"
    # VLMEvalKit's period regex is the intended one: "1." keeps its period
    assert M.vqa_normalize("1.", "vlmevalkit") == "1."
    assert M.vqa_normalize("1.", "lmms_eval_vqav2") == "1"


# --- VQA accuracy -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
@pytest.mark.parametrize("variant", M.VQA_VARIANTS)
def test_vqa_accuracy_leave_one_out(k, expected, variant):
    # k annotators agree: the 10 subsets of 9 keep k matches (10-k subsets) or k-1 (k subsets).
    # k=1: 9 subsets * 1/3 / 10 = 0.3; k=2: (8*2/3 + 2*1/3)/10 = 0.6; k=3: (7*1 + 3*2/3)/10 = 0.9; k=4: 1.0
    answers = ["cat"] * k + ["dog"] * (10 - k)
    assert M.vqa_accuracy("Cat.", answers, variant) == expected


def test_vqa_accuracy_answer_count():
    with pytest.raises(LoupeError):
        M.vqa_accuracy("cat", ["cat"] * 9, "llava")  # upstream: assert len(answers) == 10
    assert M.vqa_accuracy("cat", ["cat"] * 3, "lmms_eval_textvqa") == 2 / 3
    assert M.vqa_accuracy("cat", ["cat"], "vlmevalkit") == 0.0  # a lone answer leaves nothing to match
    with pytest.raises(LoupeError):
        M.vqa_accuracy("cat", [], "vlmevalkit")


def test_vqa_accuracy_variants_differ_on_periods():
    assert M.vqa_accuracy("1.", ["1"] * 10, "llava") == 1.0
    assert M.vqa_accuracy("1.", ["1"] * 10, "vlmevalkit") == 0.0


def test_vqav2_dict_answers_without_ids():
    # lmms-eval leaves out "the" answer by dict inequality: identical dicts are all left out together
    answers = [{"answer": "cat"}] * 4 + [{"answer": "dog", "answer_id": i} for i in range(6)]
    # a "cat" subset loses all four cats (0); a "dog" subset keeps them (min(1, 4/3) = 1): 6/10
    assert M.vqa_accuracy("cat", answers, "lmms_eval_vqav2") == 0.6
    assert M.vqa_accuracy("cat", ["cat"] * 4 + ["dog"] * 6, "lmms_eval_vqav2") == 1.0


# --- exact match --------------------------------------------------------------------------------------------
def test_exact_match():
    assert M.exact_match("B", "B") == 1.0
    assert M.exact_match("b", "B") == 0.0
    assert M.exact_match("(b).", "B", ignore_case=True, ignore_punctuation=True) == 1.0
    assert M.exact_match("B ", "B", ignore_case=True, ignore_punctuation=True) == 0.0  # no strip
    assert M.exact_match("Answer: B", "B", regexes_to_ignore=["Answer: "]) == 1.0
    assert M.exact_match("B2", "B", ignore_numbers=True) == 1.0
    assert M.exact_match("\u0130", "i", ignore_case=True) == 1.0  # np.char.lower cuts "i̇" to "i"


# --- ANLS ---------------------------------------------------------------------------------------------------
def test_anls_threshold_edges():
    assert M.anls("ab", ["ac"]) == 0.5           # NL = 1/2 exactly: kept (s < 0.5 -> 0)
    assert M.anls("abcde", ["abcyz"]) == 0.6     # NL = 2/5
    assert M.anls("abcde", ["abxyz"]) == 0.0     # NL = 3/5 -> s = 0.4 < 0.5
    assert M.anls("abcde", ["abxyz"], threshold=0.4) == 1 - 3 / 5
    assert M.anls("CAT", ["x", " cat "]) == 1.0  # best answer, normalised case and spaces


def test_anls_raw_length_denominator():
    # normalised "ab" vs "abcd": distance 2; lmms-eval divides by the raw length max(4, 5) = 5
    assert M.anls("ab   ", ["abcd"]) == 1 - 2 / 5
    # LLaVA-UHD v2's STVQA evaluator divides by the normalised length 4: 0.5, kept (>= 0.5)
    assert M.anls("ab   ", ["abcd"], variant="uhd_stvqa") == 0.5


def test_anls_empty():
    assert M.anls("", [""]) == 1.0
    assert M.anls("", ["abc"]) == 0.0
    assert M.anls("abc", [""]) == 0.0
    assert M.anls("", [""], variant="uhd_stvqa") == 1.0
    with pytest.raises(LoupeError):
        M.anls("abc", [])


# --- ChartQA relaxed accuracy -------------------------------------------------------------------------------
@pytest.mark.parametrize("pred, target, expected", [
    ("45%", "0.45", 1.0),   # 45% -> 0.45
    ("0.45", "45%", 1.0),
    ("45%", "45", 0.0),     # 0.45 vs 45
    ("47", "45", 1.0),      # 2/45 = 4.4% <= 5%
    ("48", "45", 0.0),      # 3/45 = 6.7%
    ("0", "0", 1.0),        # zero target: string match
    ("0.0", "0", 0.0),
    ("0.01", "0", 0.0),
    ("45.", "45", 1.0),     # float("45.") parses
    ("Yes.", "yes", 0.0),   # trailing period on text: string mismatch
    ("ABC", "abc", 1.0),
    (" 45", "45", 1.0),     # float() ignores surrounding spaces
    ("45% ", "0.45", 0.0),  # lmms-eval does not strip: no "%" at the end, not a float, strings differ
])
def test_relaxed_accuracy_lmms_eval(pred, target, expected):
    assert M.relaxed_accuracy(pred, target) == expected


def test_relaxed_accuracy_vlmevalkit():
    assert M.relaxed_accuracy("45% ", "0.45", "vlmevalkit") == 1.0  # stripped
    assert M.relaxed_accuracy("12", ["abc", "12.5"], "vlmevalkit") == 1.0  # max over answers (4%)


# --- OCRBench -----------------------------------------------------------------------------------------------
def test_ocrbench_substring_hits():
    assert M.ocrbench_hit("The answer is Hello World.", ["hello world"], "IIIT5K") == 1
    assert M.ocrbench_hit("10", ["1"], "IIIT5K") == 1       # substring, not equality
    assert M.ocrbench_hit("abc", ["abcd", "xyz"], "IIIT5K") == 0
    assert M.ocrbench_hit("anything", [""], "IIIT5K") == 1  # the empty answer is in everything


def test_ocrbench_fullwidth_and_hme():
    assert M.ocrbench_hit("ＨＥＬＬＯ", "hello", "IIIT5K", variant="lmms_eval") == 1  # folded to ASCII
    assert M.ocrbench_hit("ＨＥＬＬＯ", "hello", "IIIT5K", variant="vlmevalkit") == 0
    assert M.ocrbench_hit("x ^ { 2 }\n+ 1", "x^{2}+1", "HME100k") == 1    # spaces and newlines dropped
    assert M.ocrbench_hit("X^{2}", "x^{2}", "HME100k") == 0               # ... but case kept
    assert M.ocrbench_hit("X^{2}", "x^{2}", "IIIT5K") == 1
    scores = M.ocrbench_scores([
        {"prediction": "cat", "answer": ["cat"], "question_type": "Regular Text Recognition"},
        {"prediction": "x2", "answer": ["x 2"],
         "question_type": "Handwritten Mathematical Expression Recognition"},
        {"prediction": "no", "answer": ["yes"], "question_type": "Doc-oriented VQA"},
    ])
    assert (scores["Text Recognition"], scores["Final Score"], scores["Final Score Norm"]) == (1, 2, 0.2)


# --- multiple choice ----------------------------------------------------------------------------------------
OPTS = {"A": "cat", "B": "dog", "C": "bird"}


@pytest.mark.parametrize("text, style, expected", [
    ("A", "vlmevalkit", "A"),
    ("The answer is B.", "vlmevalkit", "B"),
    ("(C) cat", "vlmevalkit", "C"),  # the letter wins over the option text
    ("a dog", "vlmevalkit", "B"),    # option text
    ("cat or dog", "vlmevalkit", None),  # two option texts
    ("Cannot determine the answer", "vlmevalkit", "Z"),
    ("A", "llava_sqa", "A"),
    ("B. dog", "llava_sqa", "B"),
    ("B.dog", "llava_sqa", None),
    (" A", "llava_sqa", None),       # no strip
    ("The answer is C.", "llava_sqa", "C"),
    ("The answer is C", "llava_sqa", None),  # the regex's unescaped "." needs one more character
    ("(C) cat", "llava_sqa", None),
    ("A", "lmms_eval_sqa", "A"),
    (" b ", "lmms_eval_sqa", "B"),
    ("C. bird", "lmms_eval_sqa", "C"),
    ("The answer is B.", "lmms_eval_sqa", None),
    ("(b)", "lmms_eval_ai2d", "B"),  # exact_match ignoring case and punctuation
    ("B ", "lmms_eval_ai2d", None),
    ("  C. bird", "lmms_eval_ai2d", "C"),
    ("b) dog", "lmms_eval_seedbench", "B"),  # first character
    ("The answer is B.", "lmms_eval", "B"),
    ("(C) cat", "lmms_eval", "C"),
    ("The answer is B.", "lmms_eval_mmbench", "B"),  # wrapper "X."
    ("(C) cat", "lmms_eval_mmbench", "C"),           # wrapper "(X)"
])
def test_mcq_extract(text, style, expected):
    assert M.mcq_extract(text, OPTS, style) == expected


def test_mcq_article_guard():
    opts = {"A": "dog", "B": "cat"}
    text = "A cat sat on the mat"
    # lmms-eval MMBench: "A" among more than 3 tokens is an article -> no letter; then the option text "cat"
    assert M.mcq_extract(text, opts, "lmms_eval_mmbench") == "B"
    assert M.mcq_extract("A cat sat", opts, "lmms_eval_mmbench") == "A"  # only 3 tokens: no guard
    # VLMEvalKit's guard needs $VERBOSE; the 2024 file takes the letter, the current one wants it among the
    # last 4 tokens and then refuses the text match (20 chars > 2 * 6)
    assert M.mcq_extract(text, opts, "vlmevalkit_2024") == "A"
    assert M.mcq_extract(text, opts, "vlmevalkit") is None


def test_mcq_vlmevalkit_answer_is_regex_quirk():
    # current VLMEvalKit: "(?i)answer is **X**" with X in A-D, case-insensitive: the article "a" reads as A
    assert M.mcq_extract("The answer is a dog", {"A": "cat", "B": "dog"}, "vlmevalkit") == "A"
    assert M.mcq_extract("The answer is a dog", {"A": "cat", "B": "dog"}, "vlmevalkit_2024") == "B"


def _rotations(g, texts, key, preds):
    rows = []
    n = len(texts)
    for k, pred in enumerate(preds):
        rot = texts[k:] + texts[:k]
        row = {"index": g + k * 1_000_000, "answer": chr(65 + (key - k) % n), "prediction": pred,
               "category": "cp"}
        row.update({chr(65 + i): t for i, t in enumerate(rot)})
        rows.append(row)
    return rows


def test_circular_eval_all_rotations_must_be_right():
    texts = ["cat", "dog", "bird"]  # key "cat": A, then C, then B in the rotations
    rows = (_rotations(0, texts, 0, ["A", "C", "The answer is B"])     # all right -> hit
            + _rotations(1, texts, 0, ["A", "C", "A"])                 # one rotation wrong -> miss
            + _rotations(2, texts, 0, ["A", "cat", "I do not know"]))  # unreadable rotation -> miss
    out = M.circular_eval(rows, "vlmevalkit")
    assert out["hits"] == {0: 1, 1: 0, 2: 0}
    assert out["accuracy"] == 1 / 3
    assert out["category"] == {"cp": 1 / 3}


# --- MME ----------------------------------------------------------------------------------------------------
MME_RECORDS = [
    {"question_id": "e1", "category": "existence", "prediction": "Yes", "answer": "Yes"},
    {"question_id": "e1", "category": "existence", "prediction": "No.", "answer": "No"},
    {"question_id": "e2", "category": "existence", "prediction": "yes, there is", "answer": "Yes"},
    {"question_id": "e2", "category": "existence", "prediction": "maybe", "answer": "No"},
    {"question_id": "c1", "category": "count", "prediction": "no", "answer": "Yes"},
    {"question_id": "c1", "category": "count", "prediction": "n", "answer": "No"},
    {"question_id": "k1", "category": "code_reasoning", "prediction": "Not sure", "answer": "Yes"},
    {"question_id": "k1", "category": "code_reasoning", "prediction": "Yes", "answer": "No"},
]


def test_mme_parse():
    assert [M.mme_parse(x) for x in ["Yes.", "n", "x", "yes, there is", "nope", "not sure", "maybe"]] == [
        "yes", "no", "other", "yes", "no", "no", "other"]


def test_mme_acc_plus_pairs():
    out = M.mme_scores(MME_RECORDS, "lmms_eval")
    # existence: acc 3/4 -> 75, acc+ 1/2 images -> 50: 125. count: acc 1/2 -> 50, acc+ 0: 50. code: 0
    assert out["categories"] == {"existence": 125.0, "count": 50.0, "code_reasoning": 0.0}
    assert (out["perception"], out["cognition"]) == (175.0, 0.0)
    # VLMEvalKit reads "n" and "maybe" as Unknown (wrong): count drops to 0
    out = M.mme_scores(MME_RECORDS, "vlmevalkit")
    assert out["categories"] == {"existence": 125.0, "count": 0.0, "code_reasoning": 0.0}
    assert out["perception"] == 125.0
    with pytest.raises(LoupeError):
        M.mme_scores(MME_RECORDS[:3], "lmms_eval")  # image e2 has one question


# --- POPE ---------------------------------------------------------------------------------------------------
def test_pope_parsers():
    assert M.pope_parse("Yes, there is", "llava") == "yes"
    assert M.pope_parse("Yes, there is", "exact") == "other"
    assert M.pope_parse("Yes, there is", "vlmevalkit") == "yes"
    assert M.pope_parse("", "llava") == "yes"  # no "no" word -> yes
    assert M.pope_parse("There is no dog.", "llava") == "no"
    assert M.pope_parse("Yes. No.", "llava") == "yes"  # only the first sentence
    assert M.pope_parse("NO", "llava") == "yes"        # only "No", "no", "not" count
    assert M.pope_parse(" Yes ", "exact") == "yes"


def test_pope_metrics():
    preds = ["Yes", "No", "Yes, there is", "no", ""]
    labels = ["yes", "no", "no", "yes", "no"]
    # llava: yes, no, yes, no, yes -> TP 1, FP 2, TN 1, FN 1
    out = M.pope_metrics(preds, labels, "llava")
    p, r = 1 / 3, 1 / 2
    assert (out["tp"], out["fp"], out["tn"], out["fn"]) == (1, 2, 1, 1)
    assert (out["accuracy"], out["precision"], out["recall"]) == (2 / 5, p, r)
    assert out["f1"] == 2 * (p * r) / (p + r)
    assert out["yes_ratio"] == 3 / 5
    # exact: yes, no, other, no, other -> TP 1, FP 0, TN 1, FN 1; yes-ratio on the labels (lmms-eval bug)
    out = M.pope_metrics(preds, labels, "exact")
    assert (out["accuracy"], out["precision"], out["recall"]) == (2 / 5, 1.0, 0.5)
    assert out["f1"] == 2 * (1.0 * 0.5) / 1.5
    assert out["yes_ratio"] == 2 / 5
    assert M.pope_metrics(preds, labels, "exact", yes_ratio_of="predictions")["yes_ratio"] == 1 / 5
    # vlmevalkit: Yes, No, Yes, No, Unknown -> TP 1, FP 1, FN 1 (the Unknown has label no)
    out = M.pope_metrics(preds, labels, "vlmevalkit")
    assert (out["accuracy"], out["precision"], out["recall"], out["f1"]) == (2 / 5, 0.5, 0.5, 0.5)


# --- HallusionBench, SEED -----------------------------------------------------------------------------------
def test_hallusionbench_scores():
    recs = [
        {"l2-category": "VD", "set_id": 0, "figure_id": 0, "question_id": 0, "score": 1},
        {"l2-category": "VD", "set_id": 0, "figure_id": 0, "question_id": 1, "score": 0},
        {"l2-category": "VD", "set_id": 0, "figure_id": 1, "question_id": 0, "score": 1},
        {"l2-category": "VD", "set_id": 0, "figure_id": 1, "question_id": 1, "score": 1},
    ]
    out = M.hallusionbench_scores(recs)["Overall"]
    # aAcc 3/4; figures {0: [1, 0], 1: [1, 1]} -> 1/2; questions {0: [1, 1], 1: [0, 1]} -> 1/2
    assert out == {"aAcc": 75.0, "fAcc": 50.0, "qAcc": 50.0}


def test_seed_accuracy():
    recs = [{"prediction": "A. cat", "answer": "A", "data_type": "image"},
            {"prediction": "b", "answer": "B", "data_type": "image"},
            {"prediction": "C", "answer": "D", "data_type": "video"}]
    assert M.seed_accuracy(recs) == {"seed_all": 2 / 3, "seed_image": 1.0, "seed_video": 0.0}
    assert M.seed_accuracy(recs, "llava")["seed_all"] == 0.0  # exact text == answer


# --- RefCOCO ------------------------------------------------------------------------------------------------
WIDE, WIDE_GT = (400, 200), [100, 50, 200, 150]  # pad offset (400 - 200) // 2 = 100 on y
TALL, TALL_GT = (200, 400), [50, 100, 150, 200]  # pad offset 100 on x


@pytest.mark.parametrize("parser", ["convllava", "lmms_eval", "uhd"])
def test_rec_frames_wide_and_tall(parser):
    # the ground truth in the padded square: wide (100, 150, 200, 250) / 400, tall (150, 100, 250, 200) / 400
    wide_pad, tall_pad = "[0.25, 0.375, 0.5, 0.625]", "[0.375, 0.25, 0.625, 0.5]"
    assert M.rec_iou(wide_pad, WIDE_GT, WIDE, "padded_square", parser) == 1.0
    assert M.rec_iou(tall_pad, TALL_GT, TALL, "padded_square", parser) == 1.0
    # read in the original frame the same numbers give (100, 75, 200, 125) resp. (75, 100, 125, 200):
    # intersection 100 x 50, union 10000 + 5000 - 5000 -> IoU 0.5 exactly
    assert M.rec_iou(wide_pad, WIDE_GT, WIDE, "original", parser) == 0.5
    assert M.rec_iou(tall_pad, TALL_GT, TALL, "original", parser) == 0.5
    # >= 0.5 in ConvLLaVA and lmms-eval, > 0.5 in UHD v2
    hit = 0.0 if parser == "uhd" else 1.0
    assert M.rec_accuracy(wide_pad, WIDE_GT, WIDE, "original", parser=parser) == hit
    assert M.rec_accuracy(wide_pad, WIDE_GT, WIDE, "original", parser=parser, strict=False) == 1.0


def test_rec_iou_hand_computed():
    # padded (0.3125, 0.4375, 0.5625, 0.6875) * 400 - (0, 100, 0, 100) = (125, 75, 225, 175):
    # intersection 75 * 75 = 5625, union 10000 + 10000 - 5625 = 14375
    pred = "[0.3125, 0.4375, 0.5625, 0.6875]"
    assert M.rec_iou(pred, WIDE_GT, WIDE, "padded_square", "lmms_eval") == 5625 / 14375
    assert M.rec_iou(pred, WIDE_GT, WIDE, "padded_square", "convllava") == pytest.approx(5625 / 14375, rel=1e-6)
    assert M.rec_accuracy(pred, WIDE_GT, WIDE) == 0.0
    # ConvLLaVA: values summing to >= 4 are on a 0-1000 scale
    assert M.rec_iou("[[250, 375, 500, 625]]", WIDE_GT, WIDE, "padded_square", "convllava") == 1.0
    # COCO xywh ground truth
    assert M.rec_iou("[0.25, 0.25, 0.5, 0.75]", [100, 50, 100, 100], WIDE, "original", "lmms_eval",
                     box_format="xywh") == 1.0


def test_rec_unparsable():
    for parser in ("convllava", "lmms_eval", "uhd"):
        assert M.rec_iou("I cannot find it", WIDE_GT, WIDE, parser=parser) is None
        assert M.rec_accuracy("I cannot find it", WIDE_GT, WIDE, parser=parser) == 0.0
        assert M.rec_accuracy("I cannot find it", WIDE_GT, WIDE, parser=parser, on_unparsable="zeros") == 0.0
    assert M.rec_accuracy("0.1, 0.2, 0.3", WIDE_GT, WIDE, "original", parser="uhd", on_unparsable="skip") is None
    assert M.parse_box("[0.25 , 0.5, 0.5, 0.75]", "lmms_eval") is None  # no space allowed before a comma
    assert M.parse_box("[0.25 , 0.5, 0.5, 0.75]", "convllava") == (0.25, 0.5, 0.5, 0.75)
    assert M.parse_box("0.1,0.2,0.3,0.4\n\nThe woman.", "uhd") == (0.1, 0.2, 0.3, 0.4)


def test_bad_variant_names_fail_loudly():
    with pytest.raises(LoupeError, match="valid"):
        M.vqa_accuracy("a", ["a"] * 10, "evalai2")
    with pytest.raises(LoupeError, match="valid"):
        M.mcq_extract("A", OPTS, "vk")
    with pytest.raises(LoupeError, match="valid"):
        M.rec_accuracy("[0, 0, 1, 1]", WIDE_GT, WIDE, frame="square")


def test_variant_names_accept_hyphens():
    assert M.relaxed_accuracy("45% ", "0.45", "lmms-eval") == 0.0
    assert M.pope_parse("Yes, there is", "lmms-eval") == "other"
    assert M.rec_iou("[0.25, 0.375, 0.5, 0.625]", WIDE_GT, WIDE, "padded-square", "lmms-eval") == 1.0
    assert M.mcq_extract("The answer is B.", OPTS, "lmms-eval") == "B"
