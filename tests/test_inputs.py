"""Text inputs: the tokens matching a string as a position rule, and prompts wrapped in a chat template."""

import json

import pytest
import torch

import whitebox
from tests.test_own_model import WORDS, save_tiny, write_texts
from whitebox.capture import capture
from whitebox.config import ConfigError
from whitebox.models import load_model
from whitebox.probes import ProbeError, fit_probes, load_probe

TEMPLATE = ("{% for m in messages %}<bos> {{ m['role'] }} : {{ m['content'] }} ?{% endfor %}"
            "{% if add_generation_prompt %} yes{% endif %}")
TEXTS = ["the secret is a cat", "a dog secret word secret", "? secret", "secret secret is"] * 6
HOOK = "blocks.0.hook_out"


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    model, _ = load_model(save_tiny(tmp_path_factory.mktemp("m") / "my_model", "gpt2", seed=0))
    return model


def _ids(prompt: str) -> list[int]:
    """The word-level tokenizer by hand: one id per word, unknown words are <pad> (0)."""
    return [WORDS.index(w) if w in WORDS else 0 for w in prompt.split()]


def test_a_match_reads_the_last_or_every_token_of_the_first_occurrence_and_records_it(bridge, tmp_path):
    last = capture(bridge, TEXTS, [HOOK], positions={"match": " secret"}, labels=[i % 2 for i in range(len(TEXTS))])
    # <bos> comes first: "a dog secret word secret" reads its first " secret" at 3, "secret secret is" its second at 2
    assert last.position[:4].tolist() == [2, 3, 2, 2] and last.example[:4].tolist() == [0, 1, 2, 3]
    assert last.positions == {"match": " secret", "tokens": "last", "selected": {"secret": 24}}
    full = capture(bridge, TEXTS, [HOOK], positions="all")  # every token, to compare the rows with
    rows = torch.stack([full.acts[HOOK][(full.example == e) & (full.position == p)][0]
                        for e, p in zip(last.example.tolist(), last.position.tolist(), strict=True)])
    torch.testing.assert_close(last.acts[HOOK], rows)
    words = capture(bridge, ["the dog is a cat", "a dog is"], [HOOK], positions={"match": "dog is", "tokens": "all"})
    assert words.example.tolist() == [0, 0, 1, 1] and words.position.tolist() == [2, 3, 2, 3]
    assert words.positions["selected"] == {"dog": 2, "is": 2}
    probe = fit_probes(last, seed=0)[HOOK]
    saved = json.loads((probe.save(tmp_path / "p") / "probe.json").read_text())
    assert saved["position"] == last.positions and saved["prompt_format"] == {"chat_template": False}
    loaded = load_probe(tmp_path / "p")
    assert loaded.position == last.positions
    with pytest.raises(ProbeError, match="position rule 'match' cannot be applied live"):
        with loaded.attach(bridge):
            pass


def test_a_string_absent_from_an_input_is_refused_naming_it(bridge):
    with pytest.raises(ValueError, match=r"^input 1 \('a dog secret word secret'\) does not contain ' cat'; choose"):
        capture(bridge, TEXTS, [HOOK], positions={"match": " cat"})
    with pytest.raises(ValueError, match="a match position finds a string in text inputs, but these are token ids"):
        capture(bridge, torch.ones(2, 3, dtype=torch.long), [HOOK], positions={"match": " cat"})


def test_a_chat_template_wraps_each_text_as_a_user_turn(bridge):
    texts = TEXTS[:4]
    with pytest.raises(ValueError, match=r"^chat_template=True but this model's tokenizer has no chat template; set"):
        capture(bridge, texts, [HOOK], chat_template=True)
    bridge.tokenizer.chat_template = TEMPLATE
    try:
        wrapped = capture(bridge, texts, [HOOK], positions={"match": " secret"}, chat_template=True)
    finally:
        bridge.tokenizer.chat_template = None
    prompts = [_ids(f"<bos> user : {t} ? yes") for t in texts]  # the template's own <bos>, no second one
    by_hand = capture(bridge, prompts, [HOOK], positions="all")
    assert wrapped.position.tolist() == [4, 5, 4, 4]  # after "<bos> user :", in the text itself
    rows = torch.stack([by_hand.acts[HOOK][(by_hand.example == e) & (by_hand.position == p)][0]
                        for e, p in enumerate(wrapped.position.tolist())])
    torch.testing.assert_close(wrapped.acts[HOOK], rows)
    assert wrapped.prompt_format["chat_template"] and len(wrapped.prompt_format["template_sha256"]) == 64
    with pytest.raises(ValueError, match="chat_template=True wraps text prompts, but these inputs are token ids"):
        capture(bridge, prompts, [HOOK], chat_template=True)


def test_the_text_task_takes_a_match_position_and_a_chat_template_from_the_config(tmp_path, monkeypatch):
    folder = save_tiny(tmp_path / "my_model", "gpt2", seed=0)
    write_texts(tmp_path / "secret.jsonl", n=120)
    monkeypatch.chdir(tmp_path)
    raw = {"experiment": "probe", "model": {"source": "pretrained", "name_or_path": "my_model"},
           "task": {"name": "text", "path": "secret.jsonl", "chat_template": True},
           "locate": {"hooks": [HOOK], "position": {"match": " ?"}, "n_fit": 40, "n_test": 40},
           "tracking": {"wandb_mode": "disabled"}}
    with pytest.raises(ConfigError, match=r"^task.chat_template: chat_template=True but this model's tokenizer has no "
                       r"chat template.* \(data: .*secret.jsonl\)$"):
        whitebox.run(whitebox.parse_config(raw), out=tmp_path / "refused")
    tokenizer_file = folder / "tokenizer_config.json"
    tokenizer_file.write_text(json.dumps({**json.loads(tokenizer_file.read_text()), "chat_template": TEMPLATE}))
    whitebox.run(whitebox.parse_config(raw), out=tmp_path / "run")
    for kind in ("probes", "detectors"):
        saved = json.loads(next((tmp_path / "run" / kind / HOOK).glob("*.json")).read_text())
        # " ?" is first found where the template closes the user turn: the same token in every input
        assert saved["position"] == {"match": " ?", "tokens": "last", "selected": {"?": 40}}, kind
        assert saved["prompt_format"]["chat_template"] is True, kind
