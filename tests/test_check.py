"""The chain's check, with the real MiniLM embedder: planted unsupported sentences are flagged,
citations to passages that were not shown are removed, degenerate outputs become refusals."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from langchain_core.documents import Document

from core.check import REFUSAL, check, degenerate, normalise_citations, shown
from core.models import encode, load_embedder
from core.retrieval import VECTOR
from core.settings import ChatSettings, Settings

DOCS = [
    Document(
        "Employees in the Berlin office get 30 vacation days per year. Unused days expire on 31 March.",
        metadata={"source": "hr/handbook.md", "section": "Vacation", "score": 0.71},
    ),
    Document(
        "To reset your VPN password, open the self-service portal and choose Reset. Codes expire after 10 minutes.",
        metadata={"source": "it/vpn_guide.md", "section": "Reset", "score": 0.55},
    ),
]


@pytest.fixture(scope="module")
def embed() -> Any:
    settings = Settings()
    return partial(encode, settings, load_embedder(settings))


def run(answer: str, embed: Any, docs: list[Document] = DOCS, question: str = "How many vacation days?") -> Any:
    return check({"question": question, "docs": docs, "answer": answer}, ChatSettings(), embed)


def test_supported_sentence_keeps_its_citation_and_source(embed: Any) -> None:
    result = run("Employees in Berlin get 30 vacation days per year [1].", embed)
    assert not result.refused
    assert [s["source"] for s in result.sources] == ["hr/handbook.md"]
    assert result.answer == "Employees in Berlin get 30 vacation days per year [1]."


def test_planted_unsupported_sentence_is_flagged(embed: Any) -> None:
    result = run("Employees in Berlin get 30 vacation days per year [1]. The CEO doubles them every May [1].", embed)
    assert not result.refused
    assert result.unsupported == ["The CEO doubles them every May."]
    assert "[1]" not in result.answer.split(".")[1]


def test_answer_whose_direct_answer_is_unsupported_becomes_a_refusal(embed: Any) -> None:
    result = run("The CEO decides every May. Employees in Berlin get 30 vacation days per year [1].", embed)
    assert result.refused and "first sentence" in result.reason
    assert result.sources  # the closest passages are still listed
    flagged = run(
        "Employees in Berlin get 30 vacation days per year [1]. The CEO doubles them. Interns get none.", embed
    )
    assert not flagged.refused and len(flagged.unsupported) == 2


def test_answer_mostly_unsupported_after_a_supported_start_becomes_a_refusal(embed: Any) -> None:
    answer = (
        "Employees in Berlin get 30 vacation days per year [1]. The CEO doubles them every May for staff who "
        "joined before 2020. Interns in Munich get twelve extra days when they finish their thesis on time."
    )
    result = run(answer, embed)
    assert result.refused and "most of the answer" in result.reason
    assert result.sources


def test_wrong_number_is_not_supported_even_with_matching_words(embed: Any) -> None:
    result = run("Employees in the Berlin office get 45 vacation days per year [1].", embed)
    assert result.refused and result.answer == REFUSAL


@pytest.mark.parametrize(
    ("answer", "supported"),
    [
        ("Ask the Berlin office manager, Megan Holt, at megan.holt@kestrel-dynamics.com [1].", True),
        ("Ask the Berlin office manager, Megan Holt, at megan.holt@kestrel-dynamics.co.il [1].", False),
        ("Berlin office details are at https://intranet.kestrel.example/berlin [1].", True),
        ("Berlin office details are at https://intranet.kestrel.example/munich [1].", False),
    ],
)
def test_e_mails_and_links_must_appear_verbatim(embed: Any, answer: str, supported: bool) -> None:
    office = Document(
        "Berlin office: manager Megan Holt, megan.holt@kestrel-dynamics.com, https://intranet.kestrel.example/berlin.",
        metadata={"source": "company/offices.csv", "score": 0.7},
    )
    result = run(answer, embed, docs=[office], question="Who runs the Berlin office?")
    assert result.refused is not supported
    assert bool(result.sentences and result.sentences[0].supported) is supported


@pytest.mark.parametrize(
    ("question", "answer", "refused"),
    [
        # Half the words match (office, Berlin/vacation) but the premise does not: restated, not found.
        ("Do we have an office in Brazil?", "Yes, we do have an office in Brazil [1].", True),
        ("Is there a dress code for the Berlin office?", "Yes, there is a dress code for the Berlin office.", True),
        # A restatement the passage does state in full is fine.
        ("Do Berlin employees get vacation days?", "Yes, Berlin employees get vacation days [1].", False),
    ],
)
def test_a_yes_that_only_restates_the_question_needs_every_word_in_the_passage(
    embed: Any, question: str, answer: str, refused: bool
) -> None:
    assert run(answer, embed, question=question).refused is refused


@pytest.mark.parametrize(
    "answer",
    [
        "Maybe! Employees in the Berlin office get 30 vacation days per year [1].",
        "It depends. Employees in the Berlin office get 30 vacation days per year [1].",
    ],
)
def test_a_bare_hedge_goes_with_the_sentence_after_it(embed: Any, answer: str) -> None:
    """Celery's FAQ answers "Maybe!" and "Depends." before saying anything: on their own they claim nothing."""
    result = run(answer, embed, question="Can Berlin employees take 40 days off?")
    assert not result.refused and len(result.sentences) == 1 and result.sentences[0].source == 1
    assert run("Maybe! Employees in the Berlin office get 40 vacation days per year [1].", embed).refused


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("No, employees in the Berlin office get 30 vacation days per year [1].", False),
        ("Not yet: unused days expire on 31 March [1].", False),
        ("No. Employees in the Berlin office get 30 vacation days per year [1].", False),
        # The claim itself negates what the passage says.
        ("No, employees in the Berlin office get no vacation days [1].", True),
    ],
)
def test_a_leading_no_answers_the_question_and_does_not_negate_the_claim(
    embed: Any, answer: str, refused: bool
) -> None:
    result = run(answer, embed, question="Do Berlin employees get 40 vacation days?")
    assert result.refused is refused
    if not refused:
        assert len(result.sentences) == 1 and result.sources[0]["source"] == "hr/handbook.md"


@pytest.mark.parametrize(("section", "refused"), [("KD-GW2 Gateway > Specifications", False), ("KD-400 Sensor", True)])
def test_a_table_row_vouches_for_its_product_through_its_section(embed: Any, section: str, refused: bool) -> None:
    meta = {"source": "web/specs.html", "section": section, "score": 0.6}
    row = Document("| Operating temperature | -20 °C to +60 °C |", metadata=meta)
    result = run(
        "The KD-GW2 operates from -20 °C to +60 °C [1].", embed, [row], "What temperature can the KD-GW2 take?"
    )
    assert result.refused is refused


@pytest.mark.parametrize(("answer", "refused"), [("up to 150 °C", True), ("from -20 °C to +60 °C", False)])
def test_a_measured_value_must_keep_its_unit(embed: Any, answer: str, refused: bool) -> None:
    meta = {"source": "web/kd-gw2.html", "section": "KD-GW2 Gateway > Specifications", "score": 0.6}
    row = Document("| Radio range | up to 150 m |\n| Operating temperature | -20 °C to +60 °C |", metadata=meta)
    result = run(f"The KD-GW2 operates {answer} [1].", embed, [row], "What temperature can the KD-GW2 take?")
    assert result.refused is refused


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("On-site installation by Kestrel field service costs 1,150 EUR per engineer day from 3 May 2025 [1].", False),
        ("On-site installation by Kestrel field service costs 1,500 EUR per engineer day from 3 May 2025 [1].", True),
        ("On-site installation by Kestrel field service costs 1,150 EUR per engineer day from 4 May 2025 [1].", True),
    ],
)
def test_a_number_matches_however_it_is_written(embed: Any, answer: str, refused: bool) -> None:
    """1,150 in the answer is 1150.00 in a price list; 3 May 2025 is 2025-05-03."""
    meta = {"source": "products/price_list.csv", "section": "row 23", "score": 0.6}
    row = Document(
        "product: On-site installation / description: On-site installation by Kestrel field service, per engineer day"
        " / list_price_eur: 1150.00 / available_from: 2025-05-03",
        metadata=meta,
    )
    assert run(answer, embed, [row], "How much does installation cost?").refused is refused


def test_passages_retrieval_brought_with_their_vectors_are_not_embedded_again(embed: Any) -> None:
    embedded: list[str] = []

    def counting(texts: list[str]) -> Any:
        embedded.extend(texts)
        return embed(texts)

    answer = "Employees in Berlin get 30 vacation days per year [1]. Unused days expire on 31 March [1]."
    plain = run(answer, counting)
    assert len(embedded) == 2 + len(DOCS)  # the sentences and the passages
    stored = [Document(d.page_content, metadata={**d.metadata, VECTOR: embed([shown(d)])[0].tolist()}) for d in DOCS]
    embedded.clear()
    reused = run(answer, counting, stored)
    assert embedded == ["Employees in Berlin get 30 vacation days per year.", "Unused days expire on 31 March."]
    assert [(s.supported, s.similarity) for s in reused.sentences] == [
        # similarities are rounded to 3 places, and a passage embedded alone or in a batch differs in bf16
        (s.supported, pytest.approx(s.similarity, abs=2e-3))
        for s in plain.sentences
    ]


def test_citation_to_a_passage_not_in_the_context_is_removed(embed: Any) -> None:
    result = run("Codes expire after 10 minutes [7].", embed, question="When do reset codes expire?")
    assert result.removed_citations == [7]
    assert result.answer == "Codes expire after 10 minutes [2]."
    assert [s["source"] for s in result.sources] == ["it/vpn_guide.md"]


def test_named_source_citation_from_training_style_becomes_a_number() -> None:
    text, removed = normalise_citations("Reset it in the portal (Source: vpn_guide.md).", DOCS)
    assert (text, removed) == ("Reset it in the portal [2].", [])


def test_answer_with_no_supported_sentence_becomes_an_honest_refusal(embed: Any) -> None:
    result = run("The office is on the moon and opens at midnight.", embed)
    assert result.refused and result.answer == REFUSAL
    assert [s["source"] for s in result.sources] == ["hr/handbook.md", "it/vpn_guide.md"]  # closest listed


def test_weak_retrieval_is_refused_before_looking_at_the_answer(embed: Any) -> None:
    weak = [Document(d.page_content, metadata={**d.metadata, "score": 0.1}) for d in DOCS]
    result = run("Employees in Berlin get 30 vacation days per year [1].", embed, docs=weak)
    assert result.refused and "no passage is close" in result.reason


def test_model_refusal_is_kept_as_a_refusal(embed: Any) -> None:
    assert run("I couldn't find this in the documents.", embed).refused


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "empty"),
        ("the the", ""),
        ("days off days off days off days off days off days off days off days off days off", "loop"),
        ("[1] (hr/handbook.md · Vacation) Employees in the Berlin office get 30 days", "echoed"),
        ("Context:\nQuestion: How many vacation days?", "echoed"),
        ("### 1.2 Vacation\nEmployees get days.", "echoed"),
    ],
)
def test_degenerate_outputs_are_caught(answer: str, reason: str) -> None:
    assert (reason in degenerate(answer, "How many vacation days?")) if reason else not degenerate(answer, "q")


def test_degenerate_answer_becomes_refusal(embed: Any) -> None:
    result = run("30 days 30 days 30 days 30 days 30 days 30 days 30 days 30 days 30 days 30 days", embed)
    assert result.refused and "loop" in result.reason


def test_copied_passage_that_does_not_address_the_question_is_refused(embed: Any) -> None:
    result = run(
        "To reset your VPN password, open the self-service portal and choose Reset [2].",
        embed,
        question="What does the premium plan cost in US dollars?",
    )
    assert result.refused and "do not address" in result.reason


WORKER = Document(
    "Use the TERM signal. The worker finishes all currently executing jobs and shuts down as soon as possible.",
    metadata={"source": "ops/worker.md", "section": "Stopping the worker", "score": 0.62},
)


@pytest.mark.parametrize(
    ("question", "answer", "refused"),
    [
        ("Can I safely shut down the worker?", "Yes, use the TERM signal [1].", False),  # a yes answers it
        ("How do I stop a worker process?", "Use the TERM signal [1].", False),  # the section says what it is about
        ("Who is the deputy CISO?", "Use the TERM signal [1].", True),  # neither: it answers something else
        ("Who is the deputy CISO?", "Yes, use the TERM signal [1].", True),  # a yes answers no yes/no question
    ],
)
def test_an_answer_addresses_the_question_by_its_reply_word_or_its_passage_section(
    embed: Any, question: str, answer: str, refused: bool
) -> None:
    """A FAQ's "Yes, use the TERM signal." shares no word with its question (Celery's FAQ; RESULTS.md)."""
    result = run(answer, embed, [WORKER], question)
    assert result.refused is refused, result.reason
    assert not refused or "do not address" in result.reason


# Documents the check was never tuned on (SQLAlchemy's pooling chapter, abridged): each claim rests on the
# span nearest it, so a number, a name or a negation taken from elsewhere in the same passage is refused.
POOLING = Document(
    "By default the Engine uses a QueuePool, which keeps up to 5 connections open and allows 10 more as overflow "
    "when all of them are in use. The pool_pre_ping flag tests each connection with a simple SELECT before it is "
    "handed out, so that connections dropped by the database server are replaced transparently. "
    "SQLite databases are handled differently, because opening an SQLite connection is cheap and its connections "
    "cannot be shared freely between threads. For a file database the Engine uses NullPool, which opens and closes a "
    "connection for every checkout. For a memory database it uses SingletonThreadPool, which keeps one connection "
    "per thread. A connection checked out for longer than pool_timeout, 30 seconds by default, raises an error.",
    metadata={"source": "core/pooling.html", "section": "Connection Pooling", "score": 0.42},
)


@pytest.mark.parametrize(
    ("answer", "conflict"),
    [
        ("By default the Engine uses a QueuePool, which keeps up to 5 connections open.", ""),
        ("For a file database the Engine uses NullPool, which opens and closes a connection for every checkout.", ""),
        ("The pool_pre_ping flag tests each connection with a simple SELECT before it is handed out.", ""),
        # a number from another sentence of the same passage
        ("By default the Engine uses a QueuePool, which keeps up to 30 connections open.", "the answer says 30;"),
        # a name from another sentence of the same passage
        (
            "For a file database the Engine uses QueuePool, which opens and closes a connection for every checkout.",
            "the answer names QueuePool; [1] (core/pooling.html) names NullPool",
        ),
        # a negation the passage does not make there (it negates elsewhere: "cannot be shared")
        (
            "The pool_pre_ping flag does not test each connection with a simple SELECT before it is handed out.",
            "the answer negates what [1] (core/pooling.html) says",
        ),
        # a unit the passage does not give that number
        (
            "A connection checked out for longer than pool_timeout, 30 minutes by default, raises an error.",
            "the answer says 30 minutes; [1] (core/pooling.html) says 30 seconds",
        ),
    ],
)
def test_a_claim_rests_on_one_span_of_a_passage_from_an_unseen_set(embed: Any, answer: str, conflict: str) -> None:
    result = run(answer, embed, [POOLING], "How does SQLAlchemy pool connections?")
    assert result.refused is bool(conflict), result.reason
    assert conflict in result.reason


# One sentence that negates one thing: a claim's negation must deny what the passage denies, near it.
PAGING = Document(
    "SEV2 pages must be acknowledged within 15 minutes, and you do not page the incident commander twice. "
    "During an outage, Slack #announcements is NOT used for updates; post them in #it-status.",
    metadata={"source": "oncall.md", "section": "Paging", "score": 0.6},
)


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("SEV2 pages must be acknowledged within 15 minutes.", ""),
        ("You do not page the incident commander twice.", ""),
        ("Post updates in #it-status, not in #announcements.", ""),  # the passage's NOT comes after the word
        # the sentence negates, but not the acknowledging: the rule by count alone let these through
        ("SEV2 pages must not be acknowledged within 15 minutes.", "the answer says 'not be acknowledged'; [1]"),
        ("Post updates in #announcements, not in #it-status.", "the answer says 'not in #it-status'; [1]"),
    ],
)
def test_a_negation_must_deny_what_the_passage_denies(embed: Any, answer: str, refused: str) -> None:
    result = run(answer, embed, [PAGING], "How fast must a SEV2 page be acknowledged, and where do updates go?")
    assert result.refused is bool(refused), result.reason
    assert refused in result.reason


# HTML documentation writes "isn't" with the typographic apostrophe (U+2019): it negates all the same.
KOMBU = Document(
    "No. It used to be supported by Carrot (our old messaging library) but isn\u2019t currently supported in Kombu "
    "(our new messaging library).",
    metadata={"source": "faq.html", "section": "Can I use Celery with ActiveMQ/STOMP?", "score": 0.5},
)


@pytest.mark.parametrize(
    "answer", ["ActiveMQ isn't currently supported in Kombu.", "ActiveMQ isn\u2019t currently supported in Kombu."]
)
def test_a_typographic_apostrophe_negates_too(embed: Any, answer: str) -> None:
    result = run(answer, embed, [KOMBU], "Can I use Celery with ActiveMQ/STOMP?")
    assert not result.refused, result.reason


# Django's install FAQ (abridged): a name swapped for another of the same passage must keep some of the
# claim's words around it there ("Django requires PostgreSQL": PostgreSQL stands by "production", "recommend").
INSTALL_FAQ = Document(
    "Django requires Python. See the table in the next question for the versions of Python that work with each "
    "version of Django. Other Python libraries may be required for some use cases, but you'll receive an error "
    "about them as they're needed. Django runs SQLite by default, which is included in Python installations. For a "
    "production environment, we recommend PostgreSQL; but we also officially support MariaDB, MySQL, SQLite, "
    "and Oracle.",
    metadata={"source": "faq/install.html", "section": "FAQ: Installation", "score": 0.5},
)


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("Django requires Python.", False),
        ("For a production environment, we recommend PostgreSQL.", False),
        ("Django runs SQLite by default.", False),
        ("Django requires PostgreSQL.", True),
        ("Django runs Oracle by default.", True),
    ],
)
def test_a_name_from_the_passage_must_stand_among_the_claims_words_there(
    embed: Any, answer: str, refused: bool
) -> None:
    result = run(answer, embed, [INSTALL_FAQ], "What do I need to run Django in production?")
    assert result.refused is refused, result.reason


# Django's admin FAQ as ingestion stores it: HTML text wrapped mid-sentence, a line break before "account".
ADMIN_FAQ = Document(
    "## I can\u2019t log in. When I enter a valid username and password, it brings up the login page again, with a "
    "\u201cPlease enter a correct username and password\u201d error.\n\n"
    "If you\u2019re sure your username and password are correct, make sure your user\n"
    "account has `is_active` and\n`is_staff` set to True. The admin site\nonly allows access to users with "
    "those two fields both set to True.\n\n## How do I set a field\u2019s value?\n\nThe `ModelAdmin` class does not "
    "save the\nobject before the hooks run.",
    metadata={"source": "faq/admin.html", "section": "FAQ: The admin", "score": 0.5},
)


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        (
            "If you\u2019re sure your username and password are correct, make sure your user account has is_active "
            "and is_staff set to True.",
            False,
        ),
        ("The admin site only allows access to users with those two fields both set to True.", False),
        ("The admin site does not allow access to users with those two fields both set to True.", True),
    ],
)
def test_a_sentence_wrapped_over_lines_is_read_as_one(embed: Any, answer: str, refused: bool) -> None:
    result = run(answer, embed, [ADMIN_FAQ], "I can\u2019t log in to the admin with a valid password. Why?")
    assert result.refused is refused, result.reason
