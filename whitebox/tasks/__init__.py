"""Tasks: the Task interface, its registry and the built-in tasks (each registers itself on import).

    task = get_task(cfg.task)            # a Task for a validated (or dict) task section
    task.train_set(seed), task.evaluate(model, task.eval_set(seed))
    require(task, "contrast_pairs", "attribution")

Add a task with one file: a TaskSection subclass, a Task subclass and `register_task(...)`
(see docs/extending.md).
"""

from whitebox.tasks.base import (
    CAPABILITIES,
    Batch,
    Rater,
    Task,
    all_answer_logits,
    answer_logits,
    get_task,
    has,
    match_rater,
    reading,
    register_task,
    require,
    task_names,
)
from whitebox.tasks.pairs import ContrastPairs, Direction, TextPairs, TokenSets, honest_margin, logit_diff

# isort: off
# the built-in tasks register themselves on import, in the order the config reference lists them
from whitebox.tasks import backdoor, modular, flawed_rater, text, text_pairs  # noqa: F401
# isort: on

__all__ = [
    "CAPABILITIES", "Batch", "ContrastPairs", "Direction", "Rater", "Task", "TextPairs", "TokenSets", "all_answer_logits", "answer_logits",
    "get_task", "has", "honest_margin", "logit_diff", "match_rater", "reading", "register_task", "require", "task_names",
]
