"""The HTML of the report pages on hand-made data: every name from a file escaped, the summary rows, and what
``write_html`` replaces."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgenas.errors import InputError, OutputError
from edgenas.report import pages
from edgenas.report.html import GENERATOR_META, Section, render_page, table_html
from edgenas.report.source import RunData


def _run(id="r", config=None, best=None, evaluations=(), checkpoint=None, request=None):
    config = {"space": "nb201", "devices": [["pi", 10.0]], **(config or {})}
    return RunData(id=id, path=Path("runs") / id, config=config, request=request, evaluations=list(evaluations),
                   pareto=None, best=best, checkpoint=checkpoint)


def test_table_html_escapes_every_cell_and_marks_numeric_columns():
    t = table_html(("a<b", "ms"), [("<i>x</i>", 1.5), ("y&'", None)], (False, True))
    assert t == ("<table><thead><tr><th>a&lt;b</th><th>ms</th></tr></thead><tbody>"
                 "<tr><td>&lt;i&gt;x&lt;/i&gt;</td><td class='num'>1.5</td></tr>"
                 "<tr><td>y&amp;&#x27;</td><td class='num'>None</td></tr></tbody></table>")
    # a header of empty names: no header row; no numeric flags: no numeric column
    assert table_html(("", ""), [("k", 2)]) == "<table><tbody><tr><td>k</td><td>2</td></tr></tbody></table>"


def test_render_page_escapes_titles_and_notes_and_numbers_its_plots(tmp_path):
    import plotly.graph_objects as go

    bad = "<script>x</script>"
    page = render_page(f"t {bad}", f"s {bad}", [Section(f"one {bad}", f"n {bad}", [go.Figure(), go.Figure()]),
                                                Section("two", "", [go.Figure()], "<b>trusted</b>")],
                       plotly_src="p.js?a='1'")
    assert bad not in page and page.count("&lt;script&gt;x&lt;/script&gt;") == 5   # title twice, subtitle, h2, note
    assert "<script src='p.js?a=&#x27;1&#x27;'></script>" in page
    assert page.count("<p class='note'>") == 1 and "<h2>two</h2>" in page and "<b>trusted</b></section>" in page
    assert [page.count(f"id='plot-{n}'") for n in range(5)] == [0, 1, 1, 1, 0]
    assert page.count("<html") == page.count("<body") == 1       # the plots are parts of one document
    assert '"displaylogo": false' in page and '"responsive": true' in page
    (tmp_path / "p.html").write_text(page)
    assert pages._is_report(tmp_path / "p.html")          # the generator mark within the first 256 bytes


def test_inline_scripts_carry_the_nonce_or_are_named_by_hash_in_the_page_s_own_policy():
    """Plotly's ``to_html`` wrote <script> elements no policy could name but by 'unsafe-inline'; every inline
    script is render_page's now: served, each carries the response's nonce; as a file, the page's <meta> policy
    names each by its SHA-256, and nothing in a figure's text ends a script early."""
    import html
    import re

    import plotly.graph_objects as go

    from edgenas.report.html import script_hash

    bad = "</script><script>alert(1)</script><!--"
    sections = [Section("s", "", [go.Figure(go.Scatter(x=[1], y=[2], name=bad)), go.Figure()])]
    served = render_page("t", "s", sections, plotly_src="/p.js", script="go();", nonce="N0nce")
    tags = re.findall(r"<script[^>]*>", served)
    assert tags == ["<script src='/p.js'>"] + ["<script nonce='N0nce'>"] * 3 and "http-equiv" not in served
    assert bad not in served and "alert(1)" in served              # the name is in the page, as JSON text only
    for plotly_src in (None, "/p.js"):
        page = render_page("t", "s", sections, plotly_src=plotly_src, script="go();")
        policy = html.unescape(re.search(r"http-equiv='Content-Security-Policy' content=\"([^\"]+)\"", page).group(1))
        directives = {d.split()[0]: d.split()[1:] for d in policy.split(";")}
        scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
        assert len(scripts) == (4 if plotly_src is None else 3) and scripts[-1] == "go();"
        assert directives["script-src"] == ["'self'"] * bool(plotly_src) + [script_hash(js) for js in scripts]
        assert directives["default-src"] == ["'none'"] and "'unsafe-eval'" not in policy
        assert directives["style-src"] == ["'unsafe-inline'"]   # plotly.js's own <style> elements (FILE_POLICY)
    assert script_hash("go();") == "'sha256-bYOqbsii8BMz1hC57p5sZG4K4cMuk6QQDiwupM2aRMM='"   # openssl dgst -sha256
    # the parser reads CR LF as LF: a script is written, and hashed, as the browser will read it
    page = render_page("t", "s", [], plotly_src="/p.js", script="a();\r\nb();\rc();")
    assert "<script>a();\nb();\nc();</script>" in page and html.escape(script_hash("a();\nb();\nc();")) in page


@pytest.mark.parametrize("config, best, evaluated", [
    ({"budget_evals": 40}, None, "2 of 40"),
    ({"candidates": 27}, None, "2 over the ladder's rungs (27 candidates in the first bracket)"),
    ({"kind": "darts", "epochs": 3}, None, "2 (the network derived at each epoch's end; --epochs 3)"),
    ({"kind": "darts", "epochs": 3}, {"selection": "pt"},
     "2 (the network derived at each epoch's end and DARTS-PT's pick; --epochs 3)"),
    ({}, None, "2"),
])
def test_the_evaluations_row(config, best, evaluated):
    assert pages._evaluations(_run(config=config, best=best, evaluations=[{}, {}])) == evaluated


@pytest.mark.parametrize("config, best, chosen", [
    ({}, None, "none feasible yet"),
    ({}, {"number": 3, "objectives": {"acc": 91.25}, "latency_ms": {"pi": 4.5, "q": 12.0}},
     "#3: acc = 91.25, pi 4.5 ms, q 12 ms"),
    ({}, {"number": 0, "objectives": {}, "latency_ms": None}, "#0: acc = -, "),
    ({"kind": "darts"}, {"epoch": 2, "derivation": "argmax", "latency_ms": {"pi": 8.0}, "within_budget": True},
     "derived after epoch 2 (argmax): pi 8 ms (within budget)"),
    ({"kind": "darts"}, {"epoch": 2, "latency_ms": {"pi": 12.0}, "within_budget": False},
     "derived after epoch 2 (-): pi 12 ms (over budget)"),
    ({"kind": "darts", "devices": [["pi", None]]}, {"epoch": 1, "latency_ms": {"pi": 12.0}},
     "derived after epoch 1 (-): pi 12 ms"),
])
def test_the_chosen_row(config, best, chosen):
    assert pages._chosen(_run(config=config, best=best, request={"evaluator": "acc"})) == chosen


def test_compare_page_refuses_fewer_than_two_runs_and_different_objectives():
    with pytest.raises(InputError, match="at least two runs"):
        pages.compare_page([_run()])
    with pytest.raises(InputError, match=r"different objectives \(acc, params\)"):
        pages.compare_page([_run(request={"evaluator": "params"}), _run("s", request={"evaluator": "acc"})])


def test_compare_page_sections_by_hand():
    def ev(number, acc, ms, feasible=True):
        return {"number": number, "objectives": {"acc": acc}, "latency_ms": {"pi": ms}, "feasible": feasible,
                "arch": {"arch": f"a{number}"}}

    a = _run("r", evaluations=[ev(0, 50.0, 4.0), ev(1, 60.0, 8.0)], request={"evaluator": "acc"})
    b = _run("<b>", evaluations=[ev(0, 40.0, 2.0), ev(1, 55.0, 6.0)], request={"evaluator": "acc"})
    page = pages.compare_page([a, b], plotly_src="p.js")
    titles = ["Runs", "Convergence", "Fronts on pi", "Hypervolume per run"]
    assert [t for t in titles if f"<h2>{t}</h2>" in page] == titles and "different spaces" not in page
    assert "(reference: pi: accuracy 40, latency 10 ms)" in page
    assert "<title>edgenas: comparing r, &lt;b&gt;</title>" in page
    assert ("<tr><td>r</td><td>pi</td><td class='num'>0.5000</td><td class='num'>2</td></tr>"
            "<tr><td>&lt;b&gt;</td><td>pi</td><td class='num'>0.3750</td><td class='num'>2</td></tr>") in page
    other = _run("o", config={"space": "mbv3-tiny"}, evaluations=[ev(0, 1.0, 12.0, feasible=False)],
                 request={"evaluator": "acc"})
    page = pages.compare_page([other, replace(other, id="p")], plotly_src="p.js")  # nothing feasible: no hypervolume
    assert "Hypervolume per run" not in page and "<h2>Fronts on pi</h2>" in page
    assert "Note: the runs search different spaces." in pages.compare_page([a, other], plotly_src="p.js")


def test_write_html_replaces_a_report_but_no_other_file(tmp_path):
    out = tmp_path / "r.html"
    page = render_page("t", "s", [], plotly_src="p.js")
    assert pages.write_html(page, out) == out and out.read_text() == page
    pages.write_html(page + "again", out)                 # its own report: replaced
    assert out.read_text() == page + "again"
    other = tmp_path / "notes.html"
    for text in ("<p>mine</p>", "<!DOCTYPE html><p>mine</p>", GENERATOR_META):   # not starting as a report does
        other.write_text(text)
        with pytest.raises(OutputError, match="exists and is not an edgenas report"):
            pages.write_html(page, other)
        assert other.read_text() == text
    pages.write_html(page, other, force=True)
    assert other.read_text() == page
    link = tmp_path / "link.html"                        # a link, even to a report, is not replaced
    link.symlink_to(out)
    with pytest.raises(OutputError, match="is not an edgenas report"):
        pages.write_html(page, link)
    assert link.is_symlink() and out.read_text() == page + "again"
    with pytest.raises(OutputError, match="is a folder"):
        pages.write_html(page, tmp_path)



def test_a_file_that_cannot_be_read_is_not_taken_for_a_report(tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    out.write_text(render_page("t", "s", [], plotly_src="p.js"))

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pages, "open", unreadable, raising=False)
    with pytest.raises(OutputError, match="is not an edgenas report"):
        pages.write_html("<p>", out)

def test_a_report_the_file_system_refuses_is_one_output_error(tmp_path, monkeypatch):
    import errno

    from edgenas.errors import OutputError

    def refuse(path, text):
        raise OSError(errno.ENOENT, "No such file or directory", str(path))

    monkeypatch.setattr(pages, "atomic_write_text", refuse)
    with pytest.raises(OutputError, match=r"cannot write the report .*r\.html: No such file or directory") as e:
        pages.write_html("<p>", tmp_path / "r.html")
    assert e.value.hint == "choose a --out path in a folder you can write to"


def test_utc_of_a_time_that_is_no_time():
    assert pages._utc(0) == "1970-01-01 00:00" and pages._utc(86400 * 365 + 3660.5) == "1971-01-01 01:01"
    assert pages._utc(1e300) == "?" and pages._utc(float("nan")) == "?"


def _source(root):
    from edgenas.project import Project
    from edgenas.report.source import FolderSource

    return FolderSource(Project(root))


def _sections(page):
    """(title, note) of each section of a page, in order."""
    import re

    return re.findall(r"<section><h2>(.*?)</h2>(?:<p class='note'>(.*?)</p>)?", page)


def test_a_run_with_no_evaluation_is_a_page_with_every_name_escaped(tmp_path):
    run = _run("<r>", config={"devices": [["<pi>", 10.0], ["q", None]], "strategy": "<s>", "seed": 7})
    page = pages.run_page(run, _source(tmp_path), plotly_src="p.js")
    assert "<r>" not in page and "<pi>" not in page and "<s>" not in page
    assert "<title>edgenas run &lt;r&gt;</title>" in page
    rows = ("<tr><td>space</td><td>nb201</td></tr><tr><td>strategy</td><td>&lt;s&gt;</td></tr>"
            "<tr><td>seed</td><td>7</td></tr><tr><td>status</td><td>empty</td></tr>"
            "<tr><td>evaluations</td><td>0</td></tr><tr><td>objective</td><td>accuracy</td></tr>"
            "<tr><td>budgets</td><td>&lt;pi&gt;: 10 ms, q: - ms</td></tr>"
            "<tr><td>chosen</td><td>none feasible yet</td></tr>")
    assert rows in page
    pareto = ("0 evaluations; 0 on the front (feasible, no other feasible one is both more accurate and faster); "
              "the star is the chosen architecture; hover for details.")
    assert _sections(page) == [
        ("Summary", ""), ("Pareto front on &lt;pi&gt;", pareto), ("Pareto front on q", pareto),
        ("Convergence", "The best feasible accuracy found so far."),
        ("Where the chosen network spends its time",
         "&lt;pi&gt;: no feasible architecture yet; q: no feasible architecture yet"),
        ("Deployments: predicted vs measured", "No measurement yet (edgenas deploy DEVICE runs/&lt;r&gt;/best.json).")]
    assert [page.count(f"id='plot-{n}'") for n in range(5)] == [0, 1, 1, 1, 0]      # two fronts, one convergence


def test_a_table_run_says_its_latencies_are_a_measured_column(tmp_path):
    req = {"table": "t.csv", "latency_column": "pi", "objective": "cifar10_test"}
    evs = [{"number": 0, "objectives": {"cifar10_test": 50.0}, "latency_ms": {"pi": 12.0}, "feasible": False,
            "arch": {"arch": "<a>"}}]
    page = pages.run_page(_run(request=req, evaluations=evs), _source(tmp_path), plotly_src="p.js")
    assert ("No measurement yet (edgenas deploy DEVICE runs/r/best.json measures the chosen network on a device of "
            "yours; this run&#x27;s latencies are a benchmark table&#x27;s measured column).") in page
    assert "1 evaluations; 0 on the front" in page and "&lt;a&gt;" in page and "<a>" not in page
    assert "latency in the table's column pi (ms)" in page
    # a run without budgets has no front section and says so in its summary
    page = pages.run_page(_run(config={"devices": []}), _source(tmp_path), plotly_src="p.js")
    assert "<tr><td>budgets</td><td>none</td></tr>" in page and "Pareto front" not in page
    assert "No measurement yet (edgenas deploy DEVICE runs/r/best.json)." in page


def test_a_darts_run_page_speaks_of_loss(tmp_path):
    run = _run(config={"kind": "darts", "epochs": 2, "space": "mbv3-tiny"})
    page = pages.run_page(run, _source(tmp_path), plotly_src="p.js")
    assert ("0 evaluations (DARTS measures no accuracy: each is the network derived after an epoch, at that "
            "epoch&#x27;s training loss of the supernet); 0 on the front (feasible, no other feasible one is both "
            "of lower loss and faster)") in page
    assert "The lowest training loss of a feasible derived network so far." in page


def test_the_page_of_a_device_without_a_table(tmp_path):
    from edgenas.project import Project
    from edgenas.store import Measurement, open_store

    (tmp_path / "luts" / "fs" / "fewshot").mkdir(parents=True)
    src = _source(tmp_path)
    page = pages.device_page(src, "fs", plotly_src="p.js")
    assert _sections(page) == [("Tables", "No LUT yet: edgenas profile fs --space SPACE builds one."),
                               ("Whole-model measurements", "No whole-model measurement of this device yet.")]
    assert "<table>" not in page and "no LUT yet · generated" in page
    (tmp_path / "luts" / "fs" / "fewshot" / "mbv3-tiny.json").write_text("{}")
    stats = {"n": 40, "k": 4, "warmup_n": 12, "median_ms": 5.0, "mean_ms": 5.0, "std_ms": 0.01, "cov": 0.002,
             "p90_ms": 5.5, "p99_ms": 5.7, "min_ms": 4.5, "max_ms": 6.0, "stable": True, "total_s": 0.41}

    def measure(x, created_at, predicted_ms=4.0, space="nb201"):
        with open_store(Project(tmp_path)) as store:
            store.add(Measurement(device="fs", space=space, arch={"space": space, "schema": 1, "x": x},
                                  artifact_sha256="a" * 64, runtime="<ort>", precision="fp32",
                                  fingerprint_hash="f" * 64, stats=stats, predicted_ms=predicted_ms,
                                  created_at=created_at))

    measure(1, 0.0)
    measure(2, 86400.0 + 60, None)
    page = pages.device_page(src, "fs", plotly_src="p.js")
    assert _sections(page) == [
        ("Tables", "No LUT yet: search predicts this device&#x27;s latency from its few-shot model of mbv3-tiny "
                   "(edgenas device add fs --fewshot K) until a profile builds a table (edgenas profile fs --space "
                   "mbv3-tiny or edgenas profile fs --space nb201)."),
        ("Whole-model measurements", "The 2 newest of 2 measurements (UTC); the prediction is the one made before "
                                     "each was taken.")]
    assert ("<tr><td>nb201</td><td>1970-01-02 00:01</td><td>&lt;ort&gt;</td><td>fp32</td><td class='num'>5</td>"
            "<td class='num'>-</td><td class='num'>-</td></tr>"
            "<tr><td>nb201</td><td>1970-01-01 00:00</td><td>&lt;ort&gt;</td><td>fp32</td><td class='num'>5</td>"
            "<td class='num'>4</td><td class='num'>-20.0%</td></tr>") in page
    (tmp_path / "luts" / "fs" / ("mbv3-small-" + "a" * 12 + ".json")).write_text('{"broken": 1}')
    page = pages.device_page(src, "fs", plotly_src="p.js")
    assert _sections(page)[0] == (
        "Tables", "1 table file(s) cannot be read (mbv3-small-aaaaaaaaaaaa.json): rebuild them with edgenas profile fs "
                  "--space mbv3-small --force or edgenas profile fs --space mbv3-tiny --force or edgenas profile fs "
                  "--space nb201 --force.")
    assert "damaged tables · generated" in page


def test_the_fleet_page_of_a_device_never_profiled(tmp_path):
    src = _source(tmp_path)
    with pytest.raises(InputError, match="no device to report on"):
        pages.fleet_page(src, plotly_src="p.js")
    page = pages.fleet_page(src, ["<q>"], plotly_src="p.js")
    assert ("<tr><td>&lt;q&gt;</td><td>unknown</td><td>-</td><td class='num'>-</td><td class='num'>-</td>"
            "<td class='num'>-</td><td class='num'>-</td><td>-</td><td>n/a (no experiment database)</td>"
            "<td>not probed (edgenas fleet refresh, or report --fleet --probe)</td></tr>") in page
    assert "<q>" not in page and _sections(page) == [("Devices", "One row per device.")]
    assert "1 device(s) · generated" in page


def test_compare_page_of_darts_runs_speaks_of_their_loss():
    """DARTS runs' objective is a training loss (lower is better): the notes called it accuracy."""
    def ev(number, loss, ms):
        return {"number": number, "objectives": {"train_loss": loss}, "latency_ms": {"pi": ms}, "feasible": ms <= 10}

    runs = [_run(id, config={"kind": "darts", "epochs": 2, "space": "mbv3-tiny"}, evaluations=evs)
            for id, evs in (("a", [ev(0, 2.0, 4.0), ev(1, 1.5, 8.0)]), ("b", [ev(0, 1.8, 3.0), ev(1, 1.2, 9.0)]))]
    notes = dict(_sections(pages.compare_page(runs, plotly_src="p.js")))
    assert notes["Convergence"] == "Lowest training loss of a feasible derived network after each epoch, per run."
    assert notes["Hypervolume per run"] == (
        "Fraction of the box between the worst point seen in any run (reference: pi: training loss 2, latency 10 ms) "
        "and the best training loss / lowest latency seen, dominated by each run&#x27;s front. Higher is better.")
    assert "accuracy" not in "".join(notes.values())


def test_write_html_under_a_file_names_the_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=r"--out .*r\.html lies under .*f, which is a file"):
        pages.write_html("<p>", tmp_path / "f" / "r.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"] and (tmp_path / "f").read_text() == "x"


def test_a_file_is_a_report_only_with_the_generator_mark_in_its_first_256_bytes(tmp_path):
    head = "<!DOCTYPE html>"
    for pad, report in ((256 - len(head) - len(GENERATOR_META), True), (257 - len(head) - len(GENERATOR_META), False)):
        (tmp_path / "p.html").write_text(head + " " * pad + GENERATOR_META + "<p>")
        assert pages._is_report(tmp_path / "p.html") is report


def test_a_measurement_under_a_millisecond_or_of_zero_on_a_device_page(tmp_path):
    from edgenas.project import Project
    from edgenas.store import Measurement, open_store

    (tmp_path / "luts" / "fs").mkdir(parents=True)
    for x, median in ((1, 0.5), (2, 0.0)):
        stats = {"n": 40, "k": 4, "warmup_n": 12, "median_ms": median, "mean_ms": median, "std_ms": 0.0, "cov": 0.0,
                 "p90_ms": median, "p99_ms": median, "min_ms": median, "max_ms": median, "stable": True, "total_s": 0.1}
        with open_store(Project(tmp_path)) as store:
            store.add(Measurement(device="fs", space="nb201", arch={"space": "nb201", "schema": 1, "x": x},
                                  artifact_sha256="a" * 64, runtime="ort", precision="fp32", fingerprint_hash="f" * 64,
                                  stats=stats, predicted_ms=1.0, created_at=float(x)))
    page = pages.device_page(_source(tmp_path), "fs", plotly_src="p.js")
    assert "<td class='num'>0.5</td><td class='num'>1</td><td class='num'>+100.0%</td>" in page
    assert "<td class='num'>0</td><td class='num'>1</td><td class='num'>-</td>" in page     # no error of a 0 ms


def test_a_device_page_names_at_most_10_damaged_tables_and_lists_the_200_newest_measurements(tmp_path):
    from edgenas.project import Project
    from edgenas.store import Measurement, open_store

    lut_dir = tmp_path / "luts" / "fs"
    lut_dir.mkdir(parents=True)
    names = [f"nb201-{i:012x}.json" for i in range(12)]
    for n in names:
        (lut_dir / n).write_text('{"broken": 1}')
    stats = {"n": 40, "k": 4, "warmup_n": 12, "median_ms": 5.0, "mean_ms": 5.0, "std_ms": 0.01, "cov": 0.002,
             "p90_ms": 5.5, "p99_ms": 5.7, "min_ms": 4.5, "max_ms": 6.0, "stable": True, "total_s": 0.41}
    with open_store(Project(tmp_path)) as store:
        for x in range(201):
            store.add(Measurement(device="fs", space="nb201", arch={"space": "nb201", "schema": 1, "x": x},
                                  artifact_sha256="a" * 64, runtime="ort", precision="fp32", fingerprint_hash="f" * 64,
                                  stats=stats, predicted_ms=4.0, created_at=60.0 * x))
    page = pages.device_page(_source(tmp_path), "fs", plotly_src="p.js")
    assert _sections(page) == [
        ("Tables", f"12 table file(s) cannot be read ({', '.join(names[:10])}): rebuild them with edgenas profile fs "
                   "--space nb201 --force."),
        ("Whole-model measurements", "The 200 newest of 201 measurements (UTC); the prediction is the one made before "
                                     "each was taken.")]
    import re

    times = re.findall(r"<tr><td>nb201</td><td>(.*?)</td>", page)
    assert len(times) == 200 and times[0] == "1970-01-01 03:20" and times[-1] == "1970-01-01 00:01"
