import numpy as np
import pytest

from mira.core.config import StudentConfig
from mira.run.rundir import RunDir
from mira.students import load_student, train
from tests.students.student_data import planted_labels, stdlib_texts


@pytest.mark.slow  # ~18 s here: fine-tunes MiniLM on CPU
def test_encoder_student_trains_saves_and_reloads(tmp_path):
    # Tiny on purpose (CPU): this checks the plumbing, not the quality a GPU run would reach.
    texts = stdlib_texts(12, 400)
    signal, noise = planted_labels(texts)
    config = StudentConfig(kind="encoder", encoder_epochs=1, encoder_max_tokens=32, encoder_batch_size=4)
    idx = np.arange(len(texts))
    student, info = train(config, None, ["signal", "noise"], texts, ["code"] * 12,
                          np.column_stack([signal, noise]), idx[:9])
    assert len(info["train_loss"]) == 1 and np.isfinite(info["train_loss"][0])
    run = RunDir(tmp_path / "run")
    student.save(run.path("students", "g0"))
    loaded = load_student(run, "g0")
    pred = loaded.predict(None, texts[9:])
    assert pred.shape == (3, 2) and pred.min() >= 0 and pred.max() <= 10
    assert np.allclose(pred, student.predict(None, texts[9:]), atol=1e-4)


def test_encoder_device_reaches_the_scoring_loader(tmp_path, monkeypatch):
    """`student.encoder_device` decides where score and the Scorer run an encoder student, not only
    where distill trains it: the setting used to stop at training (scoring always took "auto")."""
    import json

    from mira.core.config import RunConfig
    from mira.scoring.apply import StageModels
    from mira.students import encoder

    seen = []
    monkeypatch.setattr(encoder.EncoderStudent, "load",
                        classmethod(lambda cls, folder, meta, device="auto": seen.append(device) or "loaded"))
    run = RunDir(tmp_path / "run")
    folder = run.path("students", "g0")
    folder.mkdir(parents=True)
    (folder / "student.json").write_text(json.dumps({"kind": "encoder", "anchors": ["a00"]}))
    config = RunConfig.model_validate({"sources": [{"name": "s", "path": "x.jsonl"}],
                                       "student": {"encoder_device": "cpu"}})
    assert StageModels(device=config.student.encoder_device).load_student(run, "g0") == "loaded"
    assert StageModels().load_student(run, "g0") == "loaded"
    assert seen == ["cpu", "auto"]
