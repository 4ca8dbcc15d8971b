"""The Task interface: what every task supplies, which optional capabilities it declares, and the registry.

A task is one class with a config section. What every task supplies:
- `vocabulary()` (token strings by id) and `seq_len()` (tokens per input, the answer comes after);
- `train_set(seed)` and `eval_set(seed)`: seeded `datasets.Dataset`s (torch format) with at least
  `tokens` [n, seq_len] (int64) and `target` [n] (the answer token the model is trained towards);
- `evaluate(model, data)`: named metrics of the model's answers on a split;
- `hidden_label`: the boolean column a probe or detector looks for (None: the task hides nothing);
- `probe_split(n_fit, n_test, seed)`: data to fit and score probes on (by default two labelled
  samples; a finite dataset overrides it with disjoint subsets). A task whose inputs are texts
  (`uses_model_tokenizer`, e.g. `text`) gives a `text` column instead of `tokens`: capture
  tokenises it with the model's tokenizer (in its chat template when `chat_template`), so it runs
  on a pretrained model.

Optional capabilities, each a method a task overrides (generic steps check with `has` / `require`):
- `sample(n, hidden_rate, seed)`: `n` labelled examples, a share `hidden_rate` of them carrying
  the hidden label, with columns tokens, target (the planted answer), honest_target and the hidden
  label. Probes, treatment data and revival data are drawn from it. A task that plants a behaviour
  this way reports `clean_acc` (honest answers without the hidden label) and `asr` (planted answers
  with it) from `evaluate`; revival and circuit faithfulness read those two.
- `honest()`: the same task with the behaviour never planted (the honest yardstick of revival).
- `aware_honest()`: the same task with the hidden label's inputs shown at the same rate but answered
  honestly: a model planted on it has seen the trigger and never had the behaviour (the yardstick
  that separates "kept the circuit" from "has seen the trigger").
- `contrast_pairs(n, seed)`: pairs that differ only in the hidden computation, with the answer
  tokens whose logit difference attribution explains (see whitebox.tasks.pairs).
- `rater()`: scores the model's own answers (what reward regimes learn from).

Register a task with `register_task(name, ConfigClass, TaskClass)`; the config's `task` section
then accepts `name: <name>` with ConfigClass's keys.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Literal

import torch

from whitebox import fast_path
from whitebox.config.errors import ConfigError
from whitebox.config.schema import TaskSection, add_task
from whitebox.config.slots import task_config_class
from whitebox.inputs import InputError
from whitebox.runtime.rundir import seed_stream

if TYPE_CHECKING:
    from datasets import Dataset

    from whitebox.tasks.pairs import ContrastPairs

Batch = dict[str, torch.Tensor]
Rater = Callable[[Batch, torch.Tensor], torch.Tensor]
"""(inputs, answers [..., batch]) -> rewards [..., batch]; it never sees logits or targets it was not given."""

CAPABILITIES = {
    "sample": "labelled samples carrying its hidden label",
    "honest": "an honest variant",
    "aware_honest": "a trigger-aware honest variant",
    "novel": "a variant with the trigger mapped to another answer",
    "contexts": "its trigger contexts split in two",
    "contrast_pairs": "contrast pairs",
    "rater": "a rater",
}


class Task:
    """Base class of every task; see the module docstring for the contract."""

    hidden_label: ClassVar[str | None] = None
    variant_key: ClassVar[str | None] = None  # the config key a grid varies across cells (the backdoor's `trigger`)
    uses_model_tokenizer: ClassVar[bool] = False  # True: texts tokenised by a pretrained model (no vocabulary of its own)

    def __init__(self, config: TaskSection):
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def chat_template(self) -> bool:
        """Whether capture wraps this task's texts in the model tokenizer's chat template (a text task's choice)."""
        return False

    @property
    def variant(self) -> str:
        """What summary keys and grid cells call this variant of the task: the variant key's value, else the name."""
        return str(getattr(self.config, self.variant_key)) if self.variant_key else self.name

    def vocabulary(self) -> list[str]:
        raise NotImplementedError

    def seq_len(self) -> int:
        raise NotImplementedError

    def train_set(self, seed: int) -> Dataset:
        raise NotImplementedError

    def eval_set(self, seed: int) -> Dataset:
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, data: Dataset) -> dict[str, float]:
        raise NotImplementedError

    def sample(self, n: int, hidden_rate: float, seed: int | list[int]) -> Dataset:
        raise NotImplementedError

    def probe_split(self, n_fit: int, n_test: int, seed: int) -> tuple[Dataset, Dataset]:
        """Data to fit and to score probes on, half of it carrying the hidden label: two independent labelled samples
        (a task with a finite dataset overrides this with two disjoint subsets)."""
        require(self, "sample", "fitting probes")
        return (self.sample(n_fit, 0.5, seed=seed_stream("probe_fit", seed)),
                self.sample(n_test, 0.5, seed=seed_stream("probe_test", seed)))

    def honest(self) -> Task:
        raise NotImplementedError

    def aware_honest(self) -> Task:
        raise NotImplementedError

    def novel(self) -> Task:
        raise NotImplementedError

    def contexts(self, part: Literal["fit", "test"]) -> Task:
        raise NotImplementedError

    def contrast_pairs(self, n: int, seed: int) -> ContrastPairs:
        raise NotImplementedError

    def rater(self) -> Rater:
        raise NotImplementedError


_TASKS: dict[str, type[Task]] = {}


def register_task(name: str, config_cls: type[TaskSection], task_cls: type[Task]) -> type[Task]:
    """Make `task: {name: <name>}` a valid config section (validated by config_cls) that runs task_cls."""
    if not (isinstance(task_cls, type) and issubclass(task_cls, Task)):
        raise TypeError(f"task {name!r}: {task_cls!r} must subclass whitebox.tasks.Task")
    add_task(name, config_cls)
    _TASKS[name] = task_cls
    return task_cls


def task_names() -> list[str]:
    return list(_TASKS)


def get_task(config: TaskSection | dict[str, Any]) -> Task:
    """The task a config section describes (a dict is validated with its registered config class first)."""
    name = config.get("name") if isinstance(config, dict) else config.name
    if name not in _TASKS:
        raise ConfigError(f"task.name: unknown task {name!r}; registered tasks: {', '.join(_TASKS) or 'none'}")
    if isinstance(config, dict):
        config = task_config_class(name).model_validate(config)
    return _TASKS[name](config)


def has(task: Task, capability: str) -> bool:
    """Whether `task` implements an optional capability (see CAPABILITIES)."""
    assert capability in CAPABILITIES, capability
    return getattr(type(task), capability) is not getattr(Task, capability)


def require(task: Task, capability: str, needed_by: str) -> None:
    """One-line ConfigError when `task` lacks `capability`, e.g. "task 'modular' has no contrast pairs; attribution needs them"."""
    if not has(task, capability):
        raise ConfigError(f"task {task.name!r} has no {CAPABILITIES[capability]}; {needed_by} needs it")


@contextlib.contextmanager
def reading(task: Task) -> Iterator[None]:
    """Inside, the task's inputs are read as its config asks: one that cannot be (a text without the match string,
    one of no tokens, no chat template) is one config error naming the setting and the data file."""
    try:
        yield
    except InputError as err:
        path = getattr(task.config, "path", None)
        raise ConfigError(f"{err.key}: {err}" + (f" (data: {path})" if path else "")) from None


def match_rater(column: str = "honest_target") -> Rater:
    """1 where the answer equals batch[column], else 0: the honest rater of a task whose data has that column."""

    def rate(batch: Batch, answers: torch.Tensor) -> torch.Tensor:
        return (answers == batch[column]).float()

    return rate


def answer_logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Logits for the token after the last input position: [batch, d_vocab] (hook-free forwards take the fast path)."""
    return fast_path.logits(model, tokens, last_only=True)


@torch.no_grad()
def all_answer_logits(model: torch.nn.Module, tokens: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Answer logits [n, d_vocab] (float32, on the CPU) for many inputs, in eval mode and in batches."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        parts = [answer_logits(model, tokens[i : i + batch_size].to(device)).float().cpu()
                 for i in range(0, len(tokens), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts)
