"""``--when`` / ``--else-fail``: what parses, what each name resolves to, and every bad input refused with its fix."""

from __future__ import annotations

import pytest

from jupyter_smstep.core import conditions as c


def test_parse_keeps_the_structure_and_one_canonical_spelling():
    tree = c.parse("evaluation['rmse'] < threshold and (scores[0] in [1, 2] or not ok == True)")
    assert isinstance(tree, c.BoolOp) and tree.op == "and"
    assert c.to_text(tree) == "evaluation['rmse'] < threshold and (scores[0] in [1, 2] or not ok == True)"
    assert c.to_text(c.parse('evaluation["rmse"]<threshold')) == "evaluation['rmse'] < threshold"
    chained = c.parse("0.5 < accuracy <= 0.9")  # a chain is an `and` of its pairs
    assert c.conjuncts(chained) == [
        c.Compare("<", c.Operand("constant", value=0.5), c.Operand("name", "accuracy")),
        c.Compare("<=", c.Operand("name", "accuracy"), c.Operand("constant", value=0.9)),
    ]
    assert c.parse("x != -1").right == c.Operand("constant", value=-1)  # type: ignore[union-attr]
    member = c.parse("label not in ('cat', 'dog')")
    assert isinstance(member, c.Member) and member.negated and [v.value for v in member.values] == ["cat", "dog"]


@pytest.mark.parametrize(
    "expr, message, fix",
    [
        ("", "--when is empty", "accuracy >= 0.7"),
        ("accuracy >=", "is not a Python expression", "quote the whole expression"),
        ("accuracy", "is a value, not a condition", "accuracy == True"),
        ("len(scores) > 2", "calls a function", "compute the value in the step"),
        ("evaluation.rmse < 5", "reads an attribute", "evaluation['rmse']"),
        ("a + b > 3", "computes", "gap = a - b"),
        ("model is None", "`is` is not an operator", "== or !="),
        ("scores[-1] > 0", "negative index", "position from the start"),
        ("scores[i] > 0", "an item must be a literal key or position", "its own variable"),
        ("scores[0:2] == [1]", "an item must be a literal key or position", "its own variable"),
        ("label in labels", "the right of `in` must be a non-empty list", "label in ['cat', 'dog']"),
        ("label in []", "the right of `in` must be a non-empty list", "label in ['cat', 'dog']"),
        ("x if y else z", "is not something a SageMaker condition can evaluate", "accuracy >= 0.7"),
        ("accuracy >= 0.7; import os", "is not a Python expression", "quote"),
        ("lambda: 1", "is not something a SageMaker condition can evaluate", "accuracy >= 0.7"),
        ('ev["it\'s"] > 0', "holds a quote or a backslash, which SageMaker's JsonGet path", 'value = ev["it\'s"]'),
        ("ev['a\\\\b'] > 0", "holds a quote or a backslash", "rename the key"),
    ],
)
def test_parse_refuses_what_a_condition_step_cannot_evaluate(expr, message, fix):
    with pytest.raises(c.ConditionError) as info:
        c.parse(expr)
    assert message in info.value.message and fix in info.value.fix


def lookup(name: str) -> c.Operand:
    known = {
        "evaluation": c.Operand("output", "evaluation", step="evaluate"),
        "threshold": c.Operand("parameter", "threshold"),
        "LIMIT": c.Operand("constant", "LIMIT", value=3),
    }
    if name not in known:
        raise c.ConditionError(f"names {name!r}", fix="define it")
    return known[name]


def test_resolve_says_what_each_name_is_and_keeps_the_items_of_outputs():
    tree = c.resolve(c.parse("evaluation['rmse'] < threshold and evaluation['n'] > LIMIT"), lookup)
    first, second = c.conjuncts(tree)
    assert first == c.Compare(
        "<", c.Operand("output", "evaluation", ("rmse",), step="evaluate"), c.Operand("parameter", "threshold")
    )
    assert second.right == c.Operand("constant", "LIMIT", value=3)  # type: ignore[union-attr]
    with pytest.raises(c.ConditionError, match="reads no step output or pipeline parameter"):
        c.resolve(c.parse("LIMIT > 2"), lookup)
    with pytest.raises(c.ConditionError, match="'threshold' is a parameter, which has no items"):
        c.resolve(c.parse("threshold['x'] > 2"), lookup)
    with pytest.raises(c.ConditionError, match="names 'nowhere'"):
        c.resolve(c.parse("nowhere > 2"), lookup)


def test_messages_have_text_and_values():
    message = c.resolve_message(c.parse_message("rmse {evaluation['rmse']} over {threshold} ({{literal}})"), lookup)
    assert message.parts[0] == "rmse " and message.parts[2] == " over "
    assert message.operands() == [
        c.Operand("output", "evaluation", ("rmse",), step="evaluate"),
        c.Operand("parameter", "threshold"),
    ]
    assert message.text == "rmse {evaluation['rmse']} over {threshold} ({literal})"
    for bad, why in [
        ("", "is empty"),
        ("{x:.2f}", "has a format"),
        ("{a b}", "is not a name"),
        ("{1}", "is not a name"),
        ("{unclosed", "{unclosed"),
    ]:
        with pytest.raises(c.ConditionError, match=why.replace("{", r"\{")):
            c.parse_message(bad)


def test_definition_steps_walks_into_both_branches():
    definition = {
        "Steps": [
            {"Name": "a", "Type": "Training"},
            {
                "Name": "when-b",
                "Type": "Condition",
                "Arguments": {
                    "IfSteps": [{"Name": "b", "Type": "Training"}],
                    "ElseSteps": [{"Name": "fail-b", "Type": "Fail"}],
                },
            },
        ]
    }
    assert [(s["Name"], branch) for s, branch in c.definition_steps(definition)] == [
        ("a", None),
        ("when-b", None),
        ("b", ("when-b", True)),
        ("fail-b", ("when-b", False)),
    ]


@pytest.mark.parametrize("text", ["x < 1e400", "x > -1e400", "x == 1e999"])
def test_a_number_json_cannot_hold_is_refused(text):
    with pytest.raises(c.ConditionError, match="which the definition \\(JSON\\) cannot hold"):
        c.parse(text)
