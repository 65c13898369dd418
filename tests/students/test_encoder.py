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
