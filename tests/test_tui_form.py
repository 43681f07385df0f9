"""The new-environment form generated from public VarSpecs (console.tui.components.varspec_*).

Unit tests of the widget mapping, the allowed-value / number / bound / JSON checks
and the visibleif evaluator (on readout-dataflow's real expressions, from the corpus);
Pilot tests of the dialog on a bare app (no engine needed): each editor (comboBox,
radio set, list, multi-select, map, slider, text area) from what is entered to the
variables submitted, readout-dataflow's form round-tripping its defaults; and one
through the console with a real engine: the form's values create a real environment.
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import (
    Button,
    Input,
    RadioButton,
    Select,
    SelectionList,
    Switch,
    TextArea,
)

from console.tui.app import ConsoleApp
from console.tui.components.configurations import (
    CONFIGURATIONS_FILE,
    ConfigurationsError,
    SavedConfiguration,
    load_configurations,
    save_configuration,
)
from console.tui.components.new_environment import NewEnvironment, NewEnvironmentModal
from console.tui.components.varspec_condition import ConditionError, condition_holds
from console.tui.components.varspec_editors import (
    ComboEditor,
    ListEditor,
    MapEditor,
    RadioEditor,
)
from console.tui.components.varspec_fields import (
    FieldKind,
    FieldPlan,
    field_kind,
    item_value,
    list_items,
    map_entries,
    plan_form,
    value_problem,
)
from console.tui.components.varspec_form import VarSpecForm, field_id
from engine import Engine, VarSpec, WorkflowTemplateInfo, WorkingDirectory
from engine.scheduler.local_agent import find_running
from engine.templates.yamlsource import load_yaml, var_specs
from tests.conftest import CORPUS, make_template_repo
from tests.test_cli_env import WORKFLOW
from tests.test_environment_e2e import DUMMY, settings
from tests.test_tui import SIZE, cell, loaded, table, until

READOUT = CORPUS / "workflows" / "readout-dataflow.yaml"


def readout_specs() -> list[VarSpec]:
    document = load_yaml(READOUT.read_text(), str(READOUT))
    return var_specs(document.get("defaults")) + var_specs(document.get("vars"))


def spec(name: str, **fields: object) -> VarSpec:
    return VarSpec(name=name, **fields)  # type: ignore[arg-type]


# --- the mapping


def test_each_widget_maps_to_its_field_kind() -> None:
    assert field_kind(spec("a")) is FieldKind.TEXT
    assert field_kind(spec("a", type="number")) is FieldKind.NUMBER
    assert field_kind(spec("a", widget="slider")) is FieldKind.NUMBER
    assert field_kind(spec("a", widget="checkBox", type="bool")) is FieldKind.SWITCH
    for widget, kind in (("dropDownBox", FieldKind.CHOICE), ("listBox", FieldKind.CHOICE),
                         ("comboBox", FieldKind.COMBO), ("radioButtonBox", FieldKind.RADIO)):
        assert field_kind(spec("a", widget=widget, allowed_values=("x", "y"))) is kind
    # a choice widget without values to choose from stays a text field
    assert field_kind(spec("a", widget="dropDownBox")) is FieldKind.TEXT
    assert field_kind(spec("a", widget="comboBox")) is FieldKind.TEXT
    assert field_kind(spec("a", type="list")) is FieldKind.LIST
    assert field_kind(spec("a", type="list", allowed_values=("x",))) is FieldKind.PICKS
    assert field_kind(spec("a", type="map", widget="editBox")) is FieldKind.MAP
    assert field_kind(spec("a", rows=35)) is FieldKind.MULTILINE
    assert field_kind(spec("a", rows=1)) is FieldKind.TEXT
    assert field_kind(spec("detectors", widget="detectorSelector"), detectors=True) \
        is FieldKind.DETECTORS
    assert field_kind(spec("hosts"), hosts=True) is FieldKind.HOSTS
    assert field_kind(spec("hosts")) is FieldKind.TEXT  # no agents known: typed in
    assert field_kind(spec("detectors"), detectors=True) is FieldKind.DETECTORS


def test_fields_are_grouped_by_panel_and_ordered_by_index_then_name() -> None:
    panels = plan_form([spec("b", panel="P", index=1), spec("a", panel="P", index=1),
                        spec("z", panel="P", index=0), spec("free", index=5)])
    assert [(p.name, [f.name for f in p.fields]) for p in panels] == [
        ("P", ["z", "a", "b"]), ("General", ["free"])]


def test_readout_dataflow_maps_every_public_variable() -> None:
    specs = readout_specs()
    panels = plan_form(specs)
    assert sum(len(panel.fields) for panel in panels) == len(specs) > 50
    kinds = {plan.name: plan.kind for panel in panels for plan in panel.fields}
    assert kinds["dcs_enabled"] is FieldKind.SWITCH
    choices = [s for s in specs if s.widget == "dropDownBox" and s.allowed_values]
    assert choices and all(kinds[s.name] is FieldKind.CHOICE for s in choices)


def test_numbers_and_allowed_values_are_checked_naming_the_field() -> None:
    number = plan_form([spec("n", type="number", label="Rate")])[0].fields[0]
    assert value_problem(number, "12.5") is None and value_problem(number, "") is None
    assert value_problem(number, "fast") == "Rate (n): 'fast' is not a number"
    choice = plan_form([spec("c", widget="editBox", allowed_values=("x", "y"))])[0].fields[0]
    assert value_problem(choice, "y") is None
    assert value_problem(choice, "w") == "c (c): 'w' is not one of the allowed values: x, y"


def test_bounds_lists_and_maps_are_checked_naming_the_field() -> None:
    def plan(**fields: object) -> FieldPlan:
        return plan_form([spec("v", label="V", **fields)])[0].fields[0]

    gain = plan(widget="slider", type="number", allowed_values=("100", "0"))
    assert gain.bounds == (0.0, 100.0) and not gain.enumerated
    assert value_problem(gain, "55") is None
    assert value_problem(gain, "150") == "V (v): 150 is outside 0..100"
    assert value_problem(gain, "nan") == "V (v): 'nan' is not a number"
    ranged = plan(type="number", extra={"min": "-5"})
    assert ranged.bounds == (-5.0, None)
    assert value_problem(ranged, "-6") == "V (v): -6 is outside -5.."
    assert plan(widget="slider").bounds == (None, None)  # a slider without bounds: any number
    combo = plan(widget="comboBox", allowed_values=("a", "b"))
    assert value_problem(combo, "free text") is None  # a comboBox takes what is typed
    radio = plan(widget="radioButtonBox", allowed_values=("a", "b"))
    assert value_problem(radio, "c") == "V (v): 'c' is not one of the allowed values: a, b"
    assert value_problem(plan(type="list"), '["a", 1]') is None
    assert value_problem(plan(type="list"), '{"a": 1}') == "V (v): not a JSON list"
    picks = plan(type="list", allowed_values=("ITS", "TPC"))
    assert value_problem(picks, '["TPC"]') is None
    assert value_problem(picks, '["TPC", "MFT"]') == \
        "V (v): MFT not among the allowed values: ITS, TPC"
    assert value_problem(plan(type="map"), "[1]") == "V (v): not a JSON object"
    assert "not a JSON object" in (value_problem(plan(type="map"), "{oops") or "")


def test_list_and_map_values_keep_their_json_types() -> None:
    items = '["a", 1, "1", true, "true", null, [2]]'
    assert list_items(items) == ["a", "1", '"1"', "true", '"true"', "null", "[2]"]
    assert [item_value(text) for text in list_items(items)] == json.loads(items)
    assert list_items("x, y") == ["x", "y"]  # written by hand as the advanced box takes it
    assert map_entries('{"k": "v", "n": 2, "s": "2"}') == [("k", "v"), ("n", "2"), ("s", '"2"')]
    assert map_entries("not json") == [] and map_entries("[1]") == []


# --- visibleif / enabledif


def test_the_corpus_conditions_evaluate() -> None:
    conditions = {s.visible_if for s in readout_specs() if s.visible_if}
    assert len(conditions) >= 3
    off = {name: "false" for name in ("dcs_enabled", "epn_enabled", "qc_remote_enabled",
                                      "trg_enabled", "trg_global_run_enabled")}
    off.update(pdp_config_option="Repository hash", pdp_panel_mode="Expert",
               tfb_dd_mode="processing")
    values = {s.name: s.default_value for s in readout_specs()} | off
    for condition in conditions:  # every real condition parses; all off → hidden
        assert condition_holds(condition, values) is False, condition
    expert = ('$$epn_enabled === "true" && ($$pdp_config_option === "Repository hash" || '
              '$$pdp_config_option === "Repository path") && $$pdp_panel_mode === "Expert"')
    assert expert in conditions
    assert condition_holds(expert, values | {"epn_enabled": "true"})
    assert not condition_holds(expert, values | {"epn_enabled": "true",
                                                 "pdp_config_option": "Manual XML"})
    assert not condition_holds(expert, values | {"epn_enabled": "true", "pdp_panel_mode": "Basic"})


def test_condition_operators_and_literals() -> None:
    values = {"a": "true", "n": "3", "s": "it's"}
    assert condition_holds("", values)
    assert condition_holds("$$a == true && !($$n != 3)", values)
    assert condition_holds("$$a !== 'false' || $$n === 'no'", values)
    assert condition_holds('$$s === "it\'s"', values)
    assert not condition_holds("!$$a", values)


@pytest.mark.parametrize("expression", ["$$a > 1", "$$nope === 'x'", "($$a === 'true'",
                                        "$$a ===", "foo()", "$$a === 'true' extra"])
def test_conditions_outside_the_subset_raise(expression: str) -> None:
    with pytest.raises(ConditionError, match="column|no field|ends too early|missing"):
        condition_holds(expression, {"a": "true"})


# --- saved configurations


def test_configurations_round_trip_and_a_bad_file_is_named(tmp_path: Path) -> None:
    assert load_configurations(tmp_path) == {}
    save_configuration(tmp_path, SavedConfiguration("one", "repo/workflows/w@x", {"a": "1"}))
    save_configuration(tmp_path, SavedConfiguration("two", "repo/workflows/w@x", {"b": "2"}))
    saved = load_configurations(tmp_path)
    assert sorted(saved) == ["one", "two"] and saved["two"].variables == {"b": "2"}
    (tmp_path / CONFIGURATIONS_FILE).write_text("[1]")
    with pytest.raises(ConfigurationsError, match=CONFIGURATIONS_FILE):
        load_configurations(tmp_path)


# --- the dialog on a bare app


FORM_SPECS = (
    spec("hosts", default_value='["m1"]', label="Hosts", panel="General", index=0),
    spec("detectors", default_value="", label="Detectors", panel="General", index=1),
    spec("rate", default_value="10", type="number", label="Rate", description="Hz",
         panel="General", index=2),
    spec("mode", default_value="fast", widget="dropDownBox", allowed_values=("fast", "slow"),
         panel="General", index=3),
    spec("dcs_enabled", default_value="false", type="bool", widget="checkBox", panel="DCS"),
    spec("dcs_note", default_value="hello", panel="DCS", visible_if='$$dcs_enabled === "true"'),
    spec("locked", default_value="x", panel="DCS", enabled_if="$$mode === 'slow'"),
    spec("odd", default_value="y", panel="DCS", visible_if="$$rate > 3"),
)
TEMPLATES = [WorkflowTemplateInfo("repo", "master", "w", "", True, FORM_SPECS),
             WorkflowTemplateInfo("repo", "master", "bare", "", True, ())]
W = "repo/workflows/w@master"


class DialogApp(App[None]):
    """Only the dialog; what it answers is kept."""

    def __init__(self, root: Path, templates: list[WorkflowTemplateInfo]) -> None:
        super().__init__()
        self.root = root
        self.templates = templates
        self.answers: list[NewEnvironment | None] = []

    def on_mount(self) -> None:
        self.push_screen(NewEnvironmentModal(self.templates, hosts=["m1", "m2"],
                                             detectors=["ITS", "TPC"], root=self.root),
                         self.answers.append)


def form_of(app: App[None]) -> VarSpecForm:
    return app.screen.query_one(VarSpecForm)


def shown(form: VarSpecForm, name: str) -> bool:
    return form.query_one("#" + field_id(name) + "-field").display


async def test_the_form_follows_the_varspecs_and_creates_with_its_values(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = DialogApp(tmp_path, TEMPLATES)
    caplog.set_level(logging.WARNING)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: bool(app.screen.query(VarSpecForm)), "the form")
        form = form_of(app)
        assert isinstance(form.query_one("#var-hosts"), SelectionList)
        assert isinstance(form.query_one("#var-detectors"), SelectionList)
        assert isinstance(form.query_one("#var-rate"), Input)
        assert form.query_one("#var-mode", Select).value == "fast"
        assert form.query_one("#var-dcs_enabled", Switch).value is False
        assert "Hz" in [str(label.render()) for label in form.query(".field-description")]
        # dcs_note hidden until the checkBox is on; locked disabled until mode is slow
        assert not shown(form, "dcs_note") and form.query_one("#var-locked").disabled
        assert shown(form, "odd")  # `>` is outside the subset: shown, and logged
        assert any("odd" in record.message and "visibleif" in record.message
                   for record in caplog.records)
        form.query_one("#var-dcs_enabled", Switch).value = True
        await pilot.pause()
        assert shown(form, "dcs_note")
        form.query_one("#var-mode", Select).value = "slow"
        await pilot.pause()
        assert not form.query_one("#var-locked").disabled

        # a bad number is refused, the message names the field
        form.query_one("#var-rate", Input).value = "fast"
        await pilot.press("ctrl+s")
        problem = str(app.screen.query_one("#problem").render())
        assert "Rate (rate): 'fast' is not a number" in problem and not app.answers
        form.query_one("#var-rate", Input).value = "12"
        form.query_one("#var-detectors", SelectionList).select("TPC")
        app.screen.query_one("#variables", TextArea).text = "mode=slow\nextra=1"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: bool(app.answers), "the answer")
    answer = app.answers[0]
    assert answer is not None and answer.workflow == W
    assert answer.variables == {"hosts": '["m1"]', "detectors": '["TPC"]', "rate": "12",
                                "mode": "slow", "dcs_enabled": "true", "dcs_note": "hello",
                                "locked": "x", "odd": "y", "extra": "1"}


EDITOR_SPECS = (
    spec("run_type", default_value="PHYSICS", widget="comboBox", label="Run type",
         allowed_values=("PHYSICS", "COSMICS"), index=0),
    spec("mode", default_value="Shifter", widget="radioButtonBox",
         allowed_values=("Shifter", "Expert"), index=1),
    spec("cards", default_value='["x", 1]', type="list", label="Cards", index=2),
    spec("env", default_value='{"A": "1"}', type="map", label="Env", index=3),
    spec("gain", default_value="10", type="number", widget="slider", label="Gain",
         allowed_values=("0", "100"), index=4),
    spec("notes", default_value="line one", rows=4, index=5),
    spec("expert_only", default_value='["e"]', type="list", index=6,
         enabled_if="$$mode === 'Expert'"),
    spec("subsystems", default_value='["ITS"]', type="list", allowed_values=("ITS", "TPC"),
         index=7),
)
EDITORS = [WorkflowTemplateInfo("repo", "master", "editors", "", True, EDITOR_SPECS)]


async def type_into(pilot: Pilot[None], field: Input, text: str) -> None:
    """Replace an input's text the way an operator does: focus, clear, type."""
    field.focus()
    field.value = ""
    await pilot.press(*text)


async def test_combo_radio_list_map_slider_and_multiline_editors_submit_their_values(
        tmp_path: Path) -> None:
    app = DialogApp(tmp_path, EDITORS)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: bool(app.screen.query(VarSpecForm)), "the form")
        form = form_of(app)
        combo = form.query_one("#var-run_type", ComboEditor)
        radio = form.query_one("#var-mode", RadioEditor)
        cards = form.query_one("#var-cards", ListEditor)
        env = form.query_one("#var-env", MapEditor)
        expert = form.query_one("#var-expert_only", ListEditor)
        assert isinstance(form.query_one("#var-notes"), TextArea)
        assert form.query_one("#var-gain", Input).placeholder == "number 0..100"
        # untouched: every default as written; the expert list disabled (enabledif)
        assert form.values() == {"run_type": "PHYSICS", "mode": "Shifter", "cards": '["x", 1]',
                                 "env": '{"A": "1"}', "gain": "10", "notes": "line one",
                                 "expert_only": '["e"]', "subsystems": '["ITS"]'}
        assert expert.disabled and all(field.is_disabled for field in expert.query(Input))

        # comboBox: free text, then a pick from the allowed values replaces it
        await type_into(pilot, combo.input, "MY_RUN")
        assert form.raw_value("run_type") == "MY_RUN"
        combo.query_one(".combo-pick", Select).value = "COSMICS"
        await pilot.pause()
        assert combo.input.value == "COSMICS"
        await type_into(pilot, combo.input, "TECHNICAL-2")

        # radio set: pressing Expert enables the expert list
        radio.query(RadioButton)[1].value = True
        await until(pilot, lambda: not expert.disabled, "the expert list enabled")
        assert form.raw_value("mode") == "Expert"

        # list: add an item, edit one, remove one (the dialog stays open)
        cards.query_one(".add", Button).press()
        await until(pilot, lambda: len(cards.rows) == 3, "a third card row")
        await type_into(pilot, cards.rows[2][1][0], "z")
        cards.rows[0][0].query_one(".remove", Button).press()
        await until(pilot, lambda: len(cards.rows) == 2, "the first card row removed")
        assert form.raw_value("cards") == '[1, "z"]' and not app.answers

        # map: a second key, then the same key twice is refused naming the field
        env.query_one(".add", Button).press()
        await until(pilot, lambda: len(env.rows) == 2, "a second env row")
        key, value = env.rows[1][1]
        await type_into(pilot, key, "A")
        await type_into(pilot, value, "two words")
        # the slider's bounds, too
        await type_into(pilot, form.query_one("#var-gain", Input), "150")
        await pilot.press("ctrl+s")
        problem = str(app.screen.query_one("#problem").render())
        assert "Env (env): key A given twice" in problem
        assert "Gain (gain): 150 is outside 0..100" in problem and not app.answers
        await type_into(pilot, key, "B")
        await type_into(pilot, form.query_one("#var-gain", Input), "99.5")

        form.query_one("#var-notes", TextArea).text = "line one\nline two"
        form.query_one("#var-subsystems", SelectionList).select("TPC")
        expert.rows[0][1][0].value = ""  # a blank item is dropped: an empty list, sent as []
        await pilot.press("ctrl+s")
        await until(pilot, lambda: bool(app.answers), "the answer")
    answer = app.answers[0]
    assert answer is not None and answer.variables == {
        "run_type": "TECHNICAL-2", "mode": "Expert", "cards": '[1, "z"]',
        "env": '{"A": "1", "B": "two words"}', "gain": "99.5", "notes": "line one\nline two",
        "expert_only": "[]", "subsystems": '["ITS", "TPC"]'}


async def test_the_composite_editors_load_a_saved_configuration(tmp_path: Path) -> None:
    saved = {"run_type": "ANYTHING", "mode": "Expert", "cards": '["c1", "c2"]',
             "env": '{"K": "v"}', "notes": "a\nb"}
    save_configuration(tmp_path, SavedConfiguration("x", "repo/workflows/editors@master", saved))
    app = DialogApp(tmp_path, EDITORS)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: bool(app.screen.query(VarSpecForm)), "the form")
        screen = app.screen
        assert isinstance(screen, NewEnvironmentModal)
        await screen.load_configuration("x")
        await pilot.pause()
        form = form_of(app)
        assert {name: form.raw_value(name) for name in saved} == saved
        assert not form.query_one("#var-expert_only").disabled  # mode Expert came with it
        for name, value in (("mode", "Nobody"), ("env", "[1]")):
            save_configuration(tmp_path, SavedConfiguration(
                name, "repo/workflows/editors@master", {name: value}))
            await screen.load_configuration(name)
            assert f"({name}): {value!r} is not" in str(screen.query_one("#problem").render())


async def test_a_saved_configuration_loads_back(tmp_path: Path) -> None:
    app = DialogApp(tmp_path, TEMPLATES)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: bool(app.screen.query(VarSpecForm)), "the form")
        screen = app.screen
        assert isinstance(screen, NewEnvironmentModal)
        form = form_of(app)
        form.query_one("#var-rate", Input).value = "7"
        form.query_one("#var-dcs_enabled", Switch).value = True
        form.query_one("#var-hosts", SelectionList).select("m2")
        screen.query_one("#variables", TextArea).text = "extra=1"
        screen.query_one("#configuration-name", Input).value = "night"
        await pilot.click("#save")
        await until(pilot, lambda: "night" in load_configurations(tmp_path), "the saved file")
        saved = json.loads((tmp_path / CONFIGURATIONS_FILE).read_text())["night"]
        assert saved["workflow"] == W and saved["variables"]["rate"] == "7"
        assert saved["variables"]["hosts"] == '["m1", "m2"]'

        # another workflow, then load: the workflow, the form and the advanced box come back
        screen.query_one("#workflow", Select).value = "repo/workflows/bare@master"
        await until(pilot, lambda: not screen.query(VarSpecForm), "the bare workflow's form")
        screen.query_one("#variables", TextArea).text = ""
        screen.query_one("#configuration", Select).value = "night"
        await until(pilot, lambda: bool(screen.query(VarSpecForm)), "the loaded workflow's form")
        await until(pilot, lambda: form_of(app).raw_value("rate") == "7", "the loaded rate")
        form = form_of(app)
        assert form.raw_value("dcs_enabled") == "true" and shown(form, "dcs_note")
        assert form.raw_value("hosts") == '["m1", "m2"]'
        assert screen.query_one("#variables", TextArea).text == "extra=1"

        # a saved value the field cannot take is refused naming the field
        save_configuration(tmp_path, SavedConfiguration("bad", W, {"mode": "warp",
                                                                   "hosts": '["m9"]'}))
        await screen.load_configuration("bad")
        problem = str(screen.query_one("#problem").render())
        assert "mode (mode): 'warp' is not one of the allowed values" in problem
        assert "Hosts (hosts): m9 not among this console's choices (m1, m2)" in problem
        assert form_of(app).raw_value("hosts") == '["m1", "m2"]'  # left as it was
        save_configuration(tmp_path, SavedConfiguration("gone", "repo/workflows/old@x", {}))
        await screen.load_configuration("gone")
        assert "configuration 'gone' is for repo/workflows/old@x, which the repositories" in str(
            screen.query_one("#problem").render())


async def test_readout_dataflow_as_a_form(tmp_path: Path) -> None:
    """The corpus's big workflow: one field per public VarSpec, DCS fields behind its switch."""
    specs = readout_specs()
    templates = [WorkflowTemplateInfo("corpus", "master", "readout-dataflow", "", True,
                                      tuple(specs))]
    app = DialogApp(tmp_path, templates)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: bool(app.screen.query(VarSpecForm)), "the form")
        form = form_of(app)
        await until(pilot, lambda: len(form.query(".field")) == len(specs), "every field")
        behind_dcs = [s.name for s in specs if s.visible_if == '$$dcs_enabled === "true"']
        assert behind_dcs
        switch = form.query_one("#" + field_id("dcs_enabled"), Switch)
        switch.value = False
        await pilot.pause()
        assert not any(shown(form, name) for name in behind_dcs)
        switch.value = True
        await pilot.pause()
        assert all(shown(form, name) for name in behind_dcs)
        assert form.problems() == []  # the defaults are acceptable as they stand
        # untouched, the form sends each shown field's default as the template wrote it
        # (the detectorSelector's template expression is no detector: left to the template)
        plans = form.plans
        assert plans["detectors"].kind is FieldKind.DETECTORS
        assert {plans[name].kind for name in plans} >= {
            FieldKind.SWITCH, FieldKind.CHOICE, FieldKind.COMBO, FieldKind.RADIO,
            FieldKind.NUMBER, FieldKind.TEXT, FieldKind.MULTILINE}
        defaults = {s.name: s.default_value for s in specs} | {"dcs_enabled": "true"}
        sent = form.values()
        expected = {name: defaults[name] for name in form.visible_names()
                    if defaults[name] and name != "detectors"}
        assert sent == expected
        # and what was sent goes back into the form unchanged (a saved configuration)
        for name, value in sent.items():
            assert form.set_value(name, value) is None, name
        await pilot.pause()
        assert form.values() == sent


# --- through the console, with a real engine

FORM_WORKFLOW = WORKFLOW.replace("name: cli", "name: !public formed").replace(
    """  hosts: '["a1", "a2"]'
  fail_on: ""
""", """  hosts: !public
    value: '["a1", "a2"]'
    label: Hosts
    panel: General
  fail_on: !public
    value: ""
    widget: dropDownBox
    values: ["", "CONFIGURE", "START"]
    panel: General
    index: 1
""")


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[tuple[WorkingDirectory, Path]]:
    """Agents a1/a2 and a repository with `formed` (a local one: the console adds it)."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/formed.yaml": FORM_WORKFLOW, "tasks/dummy.yaml": DUMMY}, corpus=False)
    try:
        yield workdir, repo
    finally:
        async with Engine(workdir) as cleanup:
            await cleanup.shutdown_agents()
        assert find_running(workdir.root) == {}


async def test_the_console_creates_from_the_form(
        home: tuple[WorkingDirectory, Path]) -> None:
    workdir, repo = home
    app = ConsoleApp(workdir)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.engine is not None
        await app.engine.add_repo(str(repo))  # local repositories live as long as the engine
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewEnvironmentModal), "the form")
        screen = app.screen
        workflow = screen.query_one("#workflow", Select)
        workflow.value = next(value for _, value in workflow._options
                              if isinstance(value, str) and "/workflows/formed@" in value)
        assert isinstance(screen, NewEnvironmentModal)
        await until(pilot, lambda: screen.form is not None and "fail_on" in screen.form.plans,
                    "formed's fields")
        hosts = form_of(app).query_one("#var-hosts", SelectionList)
        assert [option.value for option in hosts._options] == ["a1", "a2"]  # the agents
        await until(pilot, lambda: sorted(hosts.selected) == ["a1", "a2"], "the default hosts")
        hosts.deselect("a2")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(table(app).rows_by_id) == 1, "the created row")
        created = next(iter(table(app).rows_by_id))
        await until(pilot, lambda: cell(app, created, "tasks") == "1/1", "its one task")
        assert cell(app, created, "hosts") == "a1"
        await app.engine.destroy_environment(created)
        await pilot.press("q")
