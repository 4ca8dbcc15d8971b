import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "config.md"


def _module():
    spec = importlib.util.spec_from_file_location(
        "update_config_reference", ROOT / "scripts" / "update_config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_current():
    text = REFERENCE.read_text()
    assert _module().render(text) == text, "run: python scripts/update_config_reference.py"


def test_reference_lists_every_key():
    from pydantic import BaseModel

    from whitebox.config import ExperimentConfig

    text = REFERENCE.read_text()

    def check(title: str, model: type[BaseModel]) -> None:
        table = text.split(f"### `{title}`", 1)[1].split("###", 1)[0]
        for key, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                check(f"{title}.{key}", field.annotation)  # a nested section has its own table
            else:
                assert f"| `{key}` |" in table, f"{title}.{key} missing from docs/config.md"

    for section in ("model", "training", "locate", "treat", "tracking", "run"):
        check(section, ExperimentConfig.model_fields[section].annotation)


def test_render_replaces_only_the_marked_block():
    module = _module()
    text = f"before\n{module.START}\nstale\n{module.END}\nafter\n"
    out = module.render(text)
    assert out.startswith("before\n") and out.endswith("after\n")
    assert "stale" not in out and "| `lr` |" in out
