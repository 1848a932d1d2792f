"""Map the labelled public corpus (../shared/data) onto semroute's route taxonomy.

Why: the classifier is trained and, above all, *evaluated out of source* on prompts nobody on the
team wrote. Every record keeps its upstream source (the unit left out in leave-one-source-out
evaluation) and a group id (near-duplicate family: same problem in several languages or formats,
same meeting or story), so no split ever puts one family on both sides.

Sources and mapping (the corpus README's "Suggested mapping", adjusted to the default config's
route names; ``also`` lists other routes a person would accept for the prompt):

* routes-corpus: CLINC150, Banking77, HWU64, xSID (19 languages), xQuAD (12 languages), MATH,
  AQuA-RAT, SVAMP, TheoremQA, HumanEval, MBPP, HumanEvalPack, HumanEvalFix, BIG-Bench-Hard,
  StrategyQA, QMSum, SQuALITY, LegalBench, MedQuAD, Natural-Instructions, hh-rlhf (harmless).
  self_instruct is left out: its labels are apps, not tasks.
* RouteLLM data: MMLU questions mapped by subject; MT-Bench first turns by category. MT-Bench has
  only 80 questions but is the one source of real chat-style creative-writing and coding asks, so
  it is **evaluation only** (never trained on).

Nothing here reads a test split of anything we are evaluated on; see the corpus README.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROUTES: tuple[str, ...] = (
    "general",
    "greeting",
    "faq_lookup",
    "summarization",
    "extraction",
    "translation",
    "classification",
    "rewriting",
    "creative_writing",
    "code_generation",
    "debugging",
    "data_sql",
    "math",
    "formal_math",
    "reasoning",
    "high_stakes",
)

# Sources used only to evaluate (too small or too precious to train on).
EVAL_ONLY_SOURCES = frozenset({"mt_bench"})


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    route: str
    source: str
    group: str
    lang: str = "en"
    also: tuple[str, ...] = field(default=())

    def accepts(self, route: str) -> bool:
        return route == self.route or route in self.also


def _jsonl(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


# --- per-file mappings --------------------------------------------------------------------------

_CLINC_GREETING_META = {"yes", "no", "maybe", "cancel", "repeat", "user_name", "thank_you"}
_CLINC_FAQ_DOMAINS = {"banking", "credit_cards", "work", "travel", "auto_and_commute"}
_CLINC_MATH = {"calculator"}
# Unit conversions ("how many km in a mile") are lookups; a maths bar would over-route them.
_CLINC_LOOKUP = {"measurement_conversion", "definition", "spelling"}


def _clinc(r: dict) -> tuple[str, tuple[str, ...]] | None:
    label, domain = r["label"], r["meta"].get("domain")
    if label == "translate":
        return "translation", ()
    if label in _CLINC_MATH:
        return "math", ("faq_lookup",)
    if domain == "small_talk" or label in _CLINC_GREETING_META:
        return "greeting", ("general",)
    if label in _CLINC_LOOKUP:
        return "faq_lookup", ("general", "math")
    if domain in _CLINC_FAQ_DOMAINS or domain == "kitchen_and_dining":
        return "faq_lookup", ("general",)
    if label == "oos":
        return "general", ("faq_lookup",)
    # home, utility, meta: assistant actions ("set a timer"): cheap, short answers
    return "faq_lookup", ("general",)


def _hwu(r: dict) -> tuple[str, tuple[str, ...]] | None:
    label = r["label"]
    if label.startswith("general_"):
        return "greeting", ("general",)
    if label == "qa_maths":
        return "math", ("faq_lookup",)
    if label in ("qa_factoid", "qa_definition"):
        return "faq_lookup", ("general",)
    return "faq_lookup", ("general",)


def _math(r: dict) -> tuple[str, tuple[str, ...]] | None:
    src = r["source"]
    if "TheoremQA" in src:
        return "math", ("reasoning", "formal_math")
    return "math", ("reasoning", "formal_math")


def _reasoning(r: dict) -> tuple[str, tuple[str, ...]] | None:
    # StrategyQA is short yes/no trivia needing an implicit hop ("Could Aristotle have used a
    # laptop?"): the config's "short factual question" (faq_lookup), not its reasoning route
    # (design, multi-step analysis, whose bar sends it to a frontier model).
    if r["label"] == "strategyqa":
        return "faq_lookup", ("general", "reasoning")
    if r["label"] in ("multistep_arithmetic_two", "object_counting"):
        return "math", ("reasoning",)
    if r["label"] == "salient_translation_error_detection":
        return "reasoning", ("classification", "translation")
    return "reasoning", ("math",)


_NI = {
    "Summarization": ("summarization", ()),
    "Title Generation": ("summarization", ("creative_writing",)),
    "Information Extraction": ("extraction", ()),
    "Named Entity Recognition": ("extraction", ("classification",)),
    "Pos Tagging": ("classification", ("extraction",)),
    "Toxic Language Detection": ("classification", ()),
    "Text Quality Evaluation": ("classification", ()),
    "Cause Effect Classification": ("classification", ("reasoning",)),
    "Word Semantics": ("classification", ("general",)),
    "Coreference Resolution": ("extraction", ("classification", "reasoning")),
    "Style Transfer": ("rewriting", ()),
    "Text Simplification": ("rewriting", ()),
    "Question Rewriting": ("rewriting", ()),
    "Sentence Perturbation": ("rewriting", ("creative_writing",)),
    "Story Composition": ("creative_writing", ()),
    "Dialogue Generation": ("creative_writing", ("general",)),
    "Sentence Composition": ("creative_writing", ("rewriting",)),
    "Question Answering": ("extraction", ("general", "faq_lookup")),
    "Number Conversion": ("math", ("general",)),
}


def _natural_instructions(r: dict) -> tuple[str, tuple[str, ...]] | None:
    return _NI.get(r["label"])  # the rest (question generation, misc.) has no clear route


def _code(r: dict) -> tuple[str, tuple[str, ...]] | None:
    if r["label"] == "HumanEvalExplain":
        return "code_generation", ("general", "debugging")
    return "code_generation", ("debugging",)


_PER_FILE = {
    "intents_clinc150.jsonl": _clinc,
    "intents_banking77.jsonl": lambda r: ("faq_lookup", ("general",)),
    "intents_hwu64.jsonl": _hwu,
    "multilingual_xsid.jsonl": lambda r: ("faq_lookup", ("general",)),
    "multilingual_xquad.jsonl": lambda r: ("extraction", ("faq_lookup", "general")),
    "math.jsonl": _math,
    "code_generation.jsonl": _code,
    "debugging_humanevalfix.jsonl": lambda r: ("debugging", ("code_generation",)),
    "reasoning.jsonl": _reasoning,
    "long_summarisation.jsonl.gz": lambda r: ("summarization", ("extraction",)),
    "legal_legalbench.jsonl": lambda r: ("high_stakes", ("classification", "extraction")),
    "medical_medquad.jsonl": lambda r: ("high_stakes", ("faq_lookup",)),
    "natural_instructions.jsonl": _natural_instructions,
    "hh_rlhf_harmless.jsonl": lambda r: ("general", ("high_stakes",)),
}

# Upstream dataset → short source name (the unit of leave-one-source-out).
_SOURCE_NAMES = {
    "clinc/oos-eval": "clinc150",
    "xliuhw/NLU-Evaluation-Data (HWU64)": "hwu64",
    "mainlp/xsid": "xsid",
    "google-deepmind/xquad": "xquad",
    "hendrycks/MATH (PRM800K splits)": "math_competition",
    "google-deepmind/AQuA": "aqua_rat",
    "arkilpatel/SVAMP": "svamp",
    "wenhuchen/TheoremQA": "theoremqa",
    "openai/human-eval": "humaneval",
    "google-research/mbpp": "mbpp",
    "bigcode-project/octopack (HumanEvalPack)": "humanevalpack",
    "bigcode-project/octopack (HumanEvalFix)": "humanevalfix",
    "suzgunmirac/BIG-Bench-Hard": "bbh",
    "eladsegal/strategyqa": "strategyqa",
    "Yale-LILY/QMSum": "qmsum",
    "nyu-mll/SQuALITY": "squality",
    "HazyResearch/legalbench": "legalbench",
    "abachaa/MedQuAD": "medquad",
    "allenai/natural-instructions": "natural_instructions",
    "anthropics/hh-rlhf": "hh_rlhf",
}


def _source_name(upstream: str, file: str) -> str:
    if upstream in _SOURCE_NAMES:
        return _SOURCE_NAMES[upstream]
    if upstream.startswith("PolyAI-LDN"):
        return "banking77"
    return Path(file).name.split(".")[0]


def _group(r: dict, source: str, i: int) -> str:
    meta = r.get("meta") or {}
    for key in ("group", "id", "unique_id", "task_id"):
        if meta.get(key):
            return f"{source}:{meta[key]}"
    return f"{source}:{i}"


def load_routes_corpus(corpus_dir: Path) -> list[Example]:
    out: list[Example] = []
    for file, mapper in _PER_FILE.items():
        path = corpus_dir / file
        for i, r in enumerate(_jsonl(path)):
            mapped = mapper(r)
            if mapped is None:
                continue
            route, also = mapped
            source = _source_name(r.get("source", ""), file)
            text = r["prompt"].strip()
            if text:
                out.append(
                    Example(text, route, source, _group(r, source, i), r.get("lang", "en"), also)
                )
    return out


# --- RouteLLM data --------------------------------------------------------------------------------

_MMLU_MATH = {
    "abstract_algebra",
    "college_mathematics",
    "elementary_mathematics",
    "high_school_mathematics",
    "high_school_statistics",
    "econometrics",
}
_MMLU_STAKES = {
    "professional_law",
    "international_law",
    "jurisprudence",
    "professional_medicine",
    "clinical_knowledge",
    "college_medicine",
    "medical_genetics",
    "anatomy",
    "virology",
    "nutrition",
    "human_aging",
    "professional_accounting",
}
_MMLU_REASONING = {"formal_logic", "logical_fallacies"}
_MMLU_CODE = {"college_computer_science", "high_school_computer_science", "computer_security"}
_MT_BENCH = {
    "writing": ("creative_writing", ("rewriting",)),
    "roleplay": ("creative_writing", ("general",)),
    "reasoning": ("reasoning", ("math",)),
    "math": ("math", ("reasoning", "formal_math")),
    "coding": ("code_generation", ("debugging", "data_sql", "reasoning")),
    "extraction": ("extraction", ("classification", "summarization", "data_sql")),
    "stem": ("general", ("reasoning", "faq_lookup", "math")),
    "humanities": ("general", ("reasoning", "creative_writing")),
}


def load_mmlu(routellm_dir: Path) -> list[Example]:
    """MMLU questions by subject: maths, law/medicine (high stakes), logic, the rest general."""
    out: list[Example] = []
    seen: set[str] = set()
    for path in sorted((routellm_dir / "mmlu" / "responses").glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        if subject in _MMLU_MATH:
            route, also = "math", ("reasoning",)
        elif subject in _MMLU_STAKES:
            route, also = "high_stakes", ("general", "faq_lookup")
        elif subject in _MMLU_REASONING:
            route, also = "reasoning", ("general",)
        elif subject in _MMLU_CODE:
            route, also = "general", ("code_generation", "reasoning")
        else:
            route, also = "general", ("faq_lookup", "reasoning")
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                text = (row.get("prompt") or "").strip()
                if text and text not in seen:
                    seen.add(text)
                    out.append(
                        Example(text, route, "mmlu", f"mmlu:{subject}:{len(seen)}", "en", also)
                    )
    return out


def load_mt_bench(routellm_dir: Path) -> list[Example]:
    """MT-Bench first turns by category (evaluation only)."""
    out: list[Example] = []
    for r in _jsonl(routellm_dir / "mt_bench" / "question.jsonl"):
        route, also = _MT_BENCH[r["category"]]
        out.append(
            Example(r["turns"][0].strip(), route, "mt_bench", f"mt:{r['question_id']}", "en", also)
        )
    return out


def load_all(shared_data: Path) -> list[Example]:
    """Every external example: routes-corpus, MMLU and MT-Bench."""
    return (
        load_routes_corpus(shared_data / "routes-corpus")
        + load_mmlu(shared_data / "routellm")
        + load_mt_bench(shared_data / "routellm")
    )
