"""Which role a tool result has when the agent loop asks a teacher for the next turn: the ``checkpoint`` teacher
(our own model, whose chat template has the ``observation`` role of docs/CHAT_CONTRACT.md, as SFT records and
agentic RL use it) reads an observation turn; a teacher that knows only system/user/assistant (HTTP APIs, HF models,
a template without that role) reads it as a user turn. Also: the loop's one-turn step has a public name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from data_pipes.reasoning import agent_loop
from data_pipes.reasoning.agent_loop import advance_turn, for_teacher, run_agent
from data_pipes.reasoning.teachers.base import GenRequest, GenResponse
from data_pipes.reasoning.teachers.checkpoint import CheckpointTeacher
from data_pipes.reasoning.tool_calls import format_tool_call
from data_pipes.reasoning.tools import calculator_tool
from tests.model.rl._ckpt import make_debug_checkpoint


class _Scripted:
    """Calls the calculator, then answers; records the messages of every request."""

    name = "scripted"

    def __init__(self, observation_role: bool) -> None:
        self.observation_role, self.seen = observation_role, []

    def generate(self, requests: Sequence[GenRequest], on_result: object = None) -> list[GenResponse]:
        out = []
        for r in requests:
            self.seen.append(r.messages)
            first = not any(m["role"] == "assistant" for m in r.messages)
            text = format_tool_call("calculator", {"expression": "6 * 7"}) if first else "Answer: 42"
            out.append(GenResponse(r.key, text))
        return out

    def close(self) -> None:
        pass


def _second_request(observation_role: bool) -> list[dict[str, str]]:
    teacher = _Scripted(observation_role)
    task = {"id": "t1", "prompt": "What is 6 * 7?", "meta": "{}"}
    (traj,) = run_agent([task], teacher, {"calculator": calculator_tool()}, max_turns=3)
    assert traj.final == "42" and [m["role"] for m in traj.messages][-3:] == [
        "assistant",
        "observation",
        "assistant",
    ]
    return teacher.seen[1]


def test_the_teacher_reads_tool_results_in_the_role_it_knows() -> None:
    knows, plain = _second_request(True), _second_request(False)
    assert [m["role"] for m in knows] == ["system", "user", "assistant", "observation"]
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    assert knows[-1]["content"] == plain[-1]["content"] and "42" in knows[-1]["content"]
    # the old private names still work
    assert agent_loop._advance is advance_turn and agent_loop._for_teacher is for_teacher


def test_the_checkpoint_teacher_knows_the_observation_role_of_its_template(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    folder = make_debug_checkpoint(str(tmp_path / "ckpt"))
    teacher = CheckpointTeacher(folder, "expert")
    assert teacher.observation_role
    messages = for_teacher(_second_request(False)[:3] + [_second_request(True)[-1]], teacher)
    text = AutoTokenizer.from_pretrained(folder).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    # rendered as the SFT records and agentic RL have it: an observation turn holding the tool response
    assert "<|observation|>\n<tool_response>\n42\n</tool_response>" in text, text
    assert text.count("<|user|>") == 1
    # a checkpoint whose template does not know the role (a transformers model's ChatML) gets user turns
    chatml = tmp_path / "chatml"
    chatml.mkdir()
    (chatml / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    )
    other = CheckpointTeacher(str(chatml), "smol")
    assert not other.observation_role
    assert [m["role"] for m in for_teacher(_second_request(True), other)][-1] == "user"
