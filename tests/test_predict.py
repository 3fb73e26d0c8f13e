"""training.predict: Kaggle submissions for the real sf-test-photos with the shipped model."""

import csv

import pytest

from inference.contract import model_input
from inference.savedmodel import TensorFlowClassifier
from inference.tta import predict_views
from tests.conftest import SF_TEST, SHIPPED_MODEL, require
from tests.helpers import carclf, carclf_error


def read_rows(path):
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["Id", "Category"]
        return [(name, int(category)) for name, category in reader]


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "submission.csv"
    carclf("predict", "--model", SHIPPED_MODEL, "--images", require(SF_TEST), "--out", out)
    return read_rows(out)


@pytest.mark.shared
def test_submission_has_a_row_per_photo_in_kaggle_format(submission):
    names = sorted(path.name for path in SF_TEST.glob("*.jpg"))
    assert len(submission) == 30 and [name for name, _ in submission] == names
    assert all(0 <= category < 10 for _, category in submission)
    assert len({category for _, category in submission}) > 1


@pytest.mark.shared
def test_categories_are_label_indices_of_the_tta_prediction(submission):
    classifier = TensorFlowClassifier(SHIPPED_MODEL)
    for name, category in submission[:5]:
        image = model_input((SF_TEST / name).read_bytes(), classifier.image_size, max_pixels=10**9)
        assert category == int(predict_views(classifier, image)[1].argmax())  # original + hflip, as the service


@pytest.mark.shared
def test_rows_follow_the_sample_submission_and_ensemble_of_itself_agrees(submission, tmp_path):
    order = [name for name, _ in submission][::-1][:12]
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("Id,Category\n" + "".join(f"{name},0\n" for name in order))
    out = tmp_path / "ordered.csv"
    carclf("predict", "--model", SHIPPED_MODEL, "--model", SHIPPED_MODEL, "--images", SF_TEST, "--out", out,
           "--sample-submission", sample)
    assert read_rows(out) == [(name, dict(submission)[name]) for name in order]


@pytest.mark.shared
def test_no_tta_is_the_original_view_alone(submission, tmp_path):
    out = tmp_path / "plain.csv"
    carclf("predict", "--model", SHIPPED_MODEL, "--images", SF_TEST, "--out", out, "--no-tta")
    classifier = TensorFlowClassifier(SHIPPED_MODEL)
    for name, category in read_rows(out)[:5]:
        image = model_input((SF_TEST / name).read_bytes(), classifier.image_size, max_pixels=10**9)
        assert category == int(predict_views(classifier, image, ("original",))[1].argmax())


@pytest.fixture()
def folder_with_a_broken_photo(tmp_path):
    photo = min(require(SF_TEST).glob("*.jpg"))
    (tmp_path / photo.name).write_bytes(photo.read_bytes())
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return tmp_path, photo.name


@pytest.mark.shared
def test_unreadable_image_fails_naming_it_or_is_skipped_on_request(folder_with_a_broken_photo, capsys):
    folder, good = folder_with_a_broken_photo
    error = carclf_error(capsys, "predict", "--model", SHIPPED_MODEL, "--images", folder, "--out", folder / "s.csv")
    assert "broken.jpg" in error and not (folder / "s.csv").exists()
    carclf("predict", "--model", SHIPPED_MODEL, "--images", folder, "--out", folder / "s.csv", "--skip-unreadable")
    assert [name for name, _ in read_rows(folder / "s.csv")] == [good]
    assert "skipped" in capsys.readouterr().err


@pytest.mark.shared
def test_sample_submission_ids_without_files_fail(folder_with_a_broken_photo, tmp_path, capsys):
    folder, good = folder_with_a_broken_photo
    sample = tmp_path / "sample.csv"
    sample.write_text(f"Id,Category\n{good},0\nmissing.jpg,0\n")
    error = carclf_error(capsys, "predict", "--model", SHIPPED_MODEL, "--images", folder, "--out", tmp_path / "s.csv",
                         "--sample-submission", sample)
    assert "missing.jpg" in error
