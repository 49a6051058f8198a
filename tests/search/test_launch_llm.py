"""``launch_search``'s language-model checks from Python, without a real model (mutation audit): which
strategies take ``--llm-share``, the options checked before the run folder exists, the note for a budget that
ends before the model proposes anything, and the operator built for a search (it loads nothing)."""

import json
from pathlib import Path

import pytest

from edgenas.errors import InputError, LLMInputError
from edgenas.project import Project
from edgenas.search.launch import SearchRequest, build_llm_operator, build_problem, idle_model_note, uses_llm

HW = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"


def request(**kw):
    return SearchRequest(**{"space": "nb201", "table": str(HW), "latency_column": "raspi4_ms", "strategy": "random",
                            "budget": 12, **kw})


def config_of(tmp_path, **kw):
    req = request(**kw)
    return req, build_problem(Project(tmp_path), req)


def test_only_strategies_with_a_language_model_take_llm_share_and_its_value_is_checked(tmp_path):
    req, (_, config) = config_of(tmp_path, llm_share=0.5)
    with pytest.raises(InputError, match="strategy random has no language-model operator") as exc:
        uses_llm(req, config)
    assert exc.value.hint == "use one of evolution, llm-evolution, ri-iwoa"
    req, (_, config) = config_of(tmp_path, strategy="evolution", llm_share=1.5)   # not checked by build_problem
    with pytest.raises(InputError, match="llm_share"):
        uses_llm(req, config)
    req, (_, config) = config_of(tmp_path, strategy="evolution", llm_share=0.5)
    assert uses_llm(req, config) is True
    req, (_, config) = config_of(tmp_path, strategy="llm-evolution")              # every child by default
    assert uses_llm(req, config) is True
    for strategy in ("evolution", "random", "tpe"):                               # no share: no model
        req, (_, config) = config_of(tmp_path, strategy=strategy)
        assert uses_llm(req, config) is False, strategy
    req, (_, config) = config_of(tmp_path, strategy="evolution", llm={"temperature": 1.0})
    with pytest.raises(InputError, match="strategy evolution uses no language model") as exc:
        uses_llm(req, config)
    assert exc.value.hint == ("use --strategy evolution or ri-iwoa with --llm-share, or --strategy llm-evolution")


def test_a_budget_within_the_first_population_says_the_model_proposes_nothing(tmp_path):
    _, (_, config) = config_of(tmp_path, strategy="evolution", population=6, llm_share=0.5, batch_size=1, budget=6)
    note = idle_model_note(config)
    assert note == ("the budget of 6 evaluations ends before the language model proposes anything: the first 6 "
                    "are random samples (the initial population); raise --budget above 6 or lower --population")
    _, (_, config) = config_of(tmp_path, strategy="evolution", population=6, llm_share=0.5, batch_size=1, budget=7)
    assert idle_model_note(config) is None                                        # the 7th is a child
    _, (_, config) = config_of(tmp_path, strategy="ri-iwoa", population=8, llm_share=0.5, budget=8)
    assert "the first 8 are random samples" in idle_model_note(config)
    _, (_, config) = config_of(tmp_path, strategy="random", budget=1)             # no population: no note
    assert idle_model_note(config) is None


def test_the_llm_operator_of_a_search_knows_its_space_objective_devices_and_folder(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    req, (problem, _) = config_of(tmp_path, strategy="evolution", llm_share=0.5, llm={"model": str(model)},
                                  max_latency_ms=(50.0,), seed=3)
    op = build_llm_operator(req, problem, tmp_path / "run")
    assert op.space is problem.space and op.objective == problem.accuracy_name
    assert [(d.name, d.budget_ms) for d in op.devices] == [(t.name, 50.0) for t in problem.devices]
    assert op.dir == tmp_path / "run" / "llm" and op.settings.model == str(model)
    assert not (tmp_path / "run").exists()                                        # nothing written, nothing loaded
    with pytest.raises(LLMInputError, match="does not exist"):
        build_llm_operator(request(llm={"model": str(tmp_path / "nope")}), problem, tmp_path / "run")
