"""Reading models' answers: the JSON object and the agent body, as real models write them."""

from __future__ import annotations

import pytest

from shared.agents import codegen, composer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": "x"}', {"a": "x"}),
        ('{"a": "line 1\nline 2"}', {"a": "line 1\nline 2"}),
        ('Here it is: {"a": 1} Hope it helps {"b": 2}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('{"a": "cut off', {"a": "cut off"}),
    ],
)
def test_objects_are_read_from_what_models_write(text, expected):
    assert codegen.parse_object(text) == expected


@pytest.mark.parametrize("text", ["", "no json at all", "[1, 2]", "{}", '"just a string"'])
def test_answers_without_an_object_are_unusable(text):
    with pytest.raises(codegen.Unusable, match="not a JSON object"):
        codegen.parse_object(text)


def test_a_body_closed_twice_and_explained_is_repaired_to_code_that_parses():
    body = "text = input_dict['inputText']\nreturn {'outputText': text}} }\n```\nIt echoes."

    code, _ = composer._parsed(body)

    assert "        return {'outputText': text} \n" in code
    assert "It echoes" not in code


def test_a_body_that_is_prose_is_not_repaired():
    with pytest.raises(SyntaxError):
        composer._parsed("This function reverses the text.")
