"""Task families: a task per trajectory, exact resume, and the problems families draw on."""

import copy
import json

import keras
import numpy as np
import pytest
from conftest import tiny_config
from keras import ops

from l2o import checkpoints, cli
from l2o.config import resolve
from l2o.estimators import FamilyEstimator, FamilyWorker
from l2o.evaluation import evaluation_problems
from l2o.problems import (
    ConvClassifier,
    MLPClassifier,
    Quadratic,
    TeacherStudent,
    build,
    datasets,
)
from l2o.problems.quadratic import sum_squared_error
from l2o.strategies import SimpleStrategy
from l2o.trainer import MetaTrainer
from l2o.validation import ConfigError

MEMBERS = [
    {"target": "mlp_classifier", "kwargs": {"layers": [4], "batch_size": 16}},
    {"target": "teacher_student",
     "kwargs": {"input_dim": 3, "hidden": [4], "teacher_hidden": [2], "batch_size": 8}},
    {"target": "quadratic", "kwargs": {"dim": 3, "condition_number": 100.0}},
]


def family_spec(members=MEMBERS, **kwargs):
    return {"target": "task_family", "args": [],
            "kwargs": {"members": copy.deepcopy(members), **kwargs}}


def family_config(directory, **kwargs):
    return tiny_config(directory, problems=[family_spec(**kwargs)])


def test_a_trajectory_task_is_a_function_of_its_seed_and_varies_across_trajectories():
    family = build(resolve(family_config("unused"))["problems"][0])
    draws = [family.member_of(seed) for seed in range(60)]
    again = build(resolve(family_config("unused"))["problems"][0])
    assert [again.member_of(seed) for seed in range(60)] == draws
    assert set(draws) == {0, 1, 2}
    for seed in (0, 1, 2, 5):  # a run's parameters and batches are its member's
        member = family.members()[family.member_of(seed)]
        for ours, theirs in zip(family.init(seed), member.init(seed)):
            np.testing.assert_array_equal(ours, theirs)
        for ours, theirs in zip(family.batches(seed, 3, 2), member.batches(seed, 3, 2)):
            np.testing.assert_array_equal(ours, theirs)
    weighted = build(resolve(family_config("unused", weights=[0, 1, 3]))["problems"][0])
    counts = np.bincount([weighted.member_of(seed) for seed in range(400)], minlength=3)
    assert counts[0] == 0 and 0.15 < counts[1] / 400 < 0.35


def test_member_k_is_that_task_alone_and_evaluation_covers_every_member():
    config = resolve(family_config("unused"))
    problems = evaluation_problems(config)
    assert [type(p) for p in problems] == [MLPClassifier, TeacherStudent, Quadratic]
    config = resolve(family_config("unused"), ["evaluation/problems=" + str(
        [family_spec(member=1)]).replace("'", '"')])
    (only,) = evaluation_problems(config)
    assert isinstance(only, TeacherStudent) and only.hidden == [4]
    single = build(resolve(family_config("unused", member=2))["problems"][0])
    assert len(single.members()) == 1 and single.member_of(7) == 0
    assert single.members()[0].condition_number == 100.0


class RecordingEstimator:
    """Stands in for a member's estimator: records what it is asked."""

    def __init__(self, name):
        self.name = name

    def init_worker_state(self, seed):
        return (self.name, seed)

    def compute_gradient_estimate(self, worker_state, generator, length, teacher=None):
        return f"{self.name} estimate", (*worker_state, length)

    def validation_metrics(self, unroll, seed):
        return {"validation_meta_loss": self.name, "seed": seed}

    def worker_arrays(self, worker_state):
        return {"x": np.array(worker_state[1])}, {"seed": worker_state[1]}

    def load_worker_state(self, arrays, info):
        return (self.name, int(arrays["x"]), info)


def test_family_estimator_runs_each_worker_and_validation_on_the_member_of_its_seed():
    family = build(resolve(family_config("unused"))["problems"][0])
    estimator = FamilyEstimator(family, [RecordingEstimator(k) for k in range(3)])
    for seed in range(6):
        member = family.member_of(seed)
        worker = estimator.init_worker_state(seed)
        assert worker == FamilyWorker(member, (member, seed))
        estimate, advanced = estimator.compute_gradient_estimate(worker, None, 5)
        assert estimate == f"{member} estimate" and advanced == FamilyWorker(member,
                                                                             (member, seed, 5))
        assert estimator.validation_metrics(10, seed) == {"validation_meta_loss": member, "seed": seed}
        arrays, info = estimator.worker_arrays(worker)
        assert info == {"seed": seed, "member": member}
        assert estimator.load_worker_state(arrays, info) == FamilyWorker(
            member, (member, seed, {"seed": seed}))


@pytest.mark.parametrize("training", [
    {"teachers": [{"class_name": "SGD", "config": {"learning_rate": 0.1}}], "p_teacher": 0.5},
    {"estimator": "pes", "n_particles": 4, "horizon": 6},
], ids=["tbptt-imitation", "pes"])
@pytest.mark.slow
def test_a_persistent_family_run_resumes_exactly(tmp_path, training):
    """2 periods straight == 1 period, then resumed for 1 more; workers keep their tasks."""
    settings = {"training": {"depth": 2, "epochs": 3, "persistent": True, **training},
                "strategy": {"num_periods": 2, "epochs_per_period": 1, "unroll_distribution": 4,
                             "validation_unroll": 6, "validation_repeat": 2,
                             "annealing_schedule": 0.0}}
    members = MEMBERS[:2]

    def run(directory, periods):
        config = resolve(tiny_config(directory, problems=[family_spec(members)], **settings),
                         [f"strategy/num_periods={periods}"])
        trainer = MetaTrainer(config)
        SimpleStrategy(**config["strategy"]).run(trainer, config["directory"])
        return trainer

    straight = run(tmp_path / "straight", 2)
    run(tmp_path / "broken", 1)
    cli.resume([str(tmp_path / "broken"), "strategy/num_periods=2"])
    resumed, info = checkpoints.load(str(tmp_path / "broken" / "checkpoints" / "last.npz"))
    for name, value in straight.meta_weights().items():
        np.testing.assert_allclose(resumed[f"meta/{name}"], value, rtol=1e-5, atol=1e-7)
    members_straight = [straight.runner.states[(0, slot)].member for slot in range(3)]
    assert len(set(members_straight)) == 2, "the slots should train on different tasks"
    assert [worker["member"] for worker in info["trainer"]["workers"]] == members_straight
    if "teachers" in training:  # imitation ran on each member with a teacher of its own
        lines = (tmp_path / "broken" / "summary.jsonl").read_text().splitlines()
        assert all("train_imitation_loss" in json.loads(line) for line in lines)
        assert {member for _, member in straight.estimators[0]._teachers} == {0, 1}


def test_teacher_student_loss_and_targets_by_hand():
    problem = TeacherStudent(input_dim=3, output_dim=2, hidden=[4], teacher_hidden=[5],
                             activation="tanh", batch_size=6)

    def mlp(params, x):
        return np.tanh(x @ params[0] + params[1]) @ params[2] + params[3]

    inputs, targets = problem.batches(7, 0, 2)
    assert inputs.shape == (2, 6, 3) and targets.shape == (2, 6, 2)
    np.testing.assert_allclose(targets, mlp(problem.teacher(7), inputs), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(problem.batches(7, 1, 1)[1][0], targets[1])
    assert not np.allclose(problem.teacher(8)[0], problem.teacher(7)[0])  # a teacher per seed
    params = problem.init(1)
    expected = np.mean((mlp(params, inputs[0]) - targets[0]) ** 2)
    assert float(problem.loss(params, (inputs[0], targets[0]))) == pytest.approx(expected,
                                                                                 rel=1e-5)
    wide = TeacherStudent(input_dim=50, output_dim=1, teacher_hidden=[200])
    kernel, bias, output_kernel, _ = wide.teacher(0)  # weights and biases ~ N(0, 1/fan_in)
    for values, fan_in in ((kernel, 50), (bias, 50), (output_kernel, 200)):
        assert np.std(values) * np.sqrt(fan_in) == pytest.approx(1.0, rel=0.15)
    noisy = TeacherStudent(input_dim=3, output_dim=2, hidden=[4], teacher_hidden=[5],
                           activation="tanh", batch_size=6, noise=0.5)
    residual = noisy.batches(7, 0, 100)[1] - mlp(noisy.teacher(7), noisy.batches(7, 0, 100)[0])
    assert np.std(residual) == pytest.approx(0.5, rel=0.1)


def test_conditioned_quadratic_eigenvalues_and_loss_by_hand():
    problem = Quadratic(dim=5, condition_number=1000)
    (w, y) = (b[0] for b in problem.batches(3, 0, 1))
    eigenvalues = np.linalg.eigvalsh(w.astype(np.float64).T @ w)
    np.testing.assert_allclose(eigenvalues, np.geomspace(1.0, 1000.0, 5), rtol=1e-4)
    x = problem.init(3)[0]
    assert float(problem.loss([x], (w, y))) == pytest.approx(np.sum((w @ x - y) ** 2), rel=1e-5)
    other, _ = (b[0] for b in problem.batches(4, 0, 1))
    assert not np.allclose(other, w)


def test_area_averaging_by_hand():
    image = np.arange(9.0).reshape(1, 3, 3, 1)
    # Each 2x2 output pixel covers 1.5 x 1.5 input pixels: weights (2/3, 1/3, 0) per axis.
    np.testing.assert_allclose(datasets.resize(image, 2)[0, ..., 0],
                               [[4 / 3, 8 / 3], [16 / 3, 20 / 3]], rtol=1e-6)
    blocks = np.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_allclose(datasets.resize(blocks, 2)[0, ..., 0],
                               [[2.5, 4.5], [10.5, 12.5]], rtol=1e-6)
    np.testing.assert_allclose(datasets.resize(datasets.resize(blocks, 2), 4)[0, ..., 0],
                               np.kron([[2.5, 4.5], [10.5, 12.5]], np.ones((2, 2))), rtol=1e-6)


def test_image_size_resamples_train_and_validation_images(mnist_folder):
    native = MLPClassifier(dataset="mnist", batch_size=16)
    small = MLPClassifier(dataset="mnist", batch_size=16, image_size=8)
    assert small.data["x_train"].shape[1:] == (8, 8, 1) == small.data["x_val"].shape[1:]
    assert small.param_shapes()[0] == (64, 20)
    for key in ("x_train", "x_val"):  # area averaging keeps each image's mean intensity
        np.testing.assert_allclose(small.data[key].mean(axis=(1, 2, 3)),
                                   native.data[key].mean(axis=(1, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(small.data["x_train"][:3],
                               datasets.resize(native.data["x_train"][:3], 8), rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda scale: MLPClassifier(layers=[5], batch_size=8, loss_scale=scale),
    lambda scale: ConvClassifier(filters=[3], batch_size=8, loss_scale=scale),
    lambda scale: Quadratic(dim=4, condition_number=10, loss_scale=scale),
    lambda scale: TeacherStudent(input_dim=3, batch_size=8, loss_scale=scale),
], ids=["mlp", "conv", "quadratic", "teacher_student"])
def test_loss_scale_multiplies_the_loss(make):
    plain, scaled = make(1.0), make(10.0)
    params = plain.init(2)
    batch = tuple(b[0] for b in plain.batches(2, 0, 1))
    assert float(scaled.loss(params, batch)) == pytest.approx(10 * float(plain.loss(params, batch)),
                                                              rel=1e-6)


def test_keras_models_compute_the_same_loss():
    regression = TeacherStudent(input_dim=3, output_dim=2, hidden=[4, 3], activation="relu")
    params = regression.init(0)
    inputs, targets = (b[0] for b in regression.batches(0, 0, 1))
    model = regression.build_model(params)
    assert float(keras.losses.mean_squared_error(targets, model(inputs)).numpy().mean()) == \
        pytest.approx(float(regression.loss(params, (inputs, targets))), rel=1e-5)
    quadratic = Quadratic(dim=4, condition_number=50)
    params = quadratic.init(1)
    w, y = (b[0] for b in quadratic.batches(1, 0, 1))
    prediction = quadratic.build_model(params)(w[None])
    assert float(sum_squared_error(y[None], prediction)[0]) == pytest.approx(
        float(quadratic.loss(params, (w, y))), rel=1e-5)
    classifier = MLPClassifier(layers=[6], activation="gelu", batch_size=8, image_size=16)
    params = classifier.init(0)
    images, labels = (b[0] for b in classifier.batches(0, 0, 1))
    assert images.shape == (8, 16, 16, 1)
    logits = classifier.build_model(params)(images)
    assert float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)) \
        == pytest.approx(float(classifier.loss(params, (images, labels))), rel=1e-5)
    assert float(ops.max(ops.abs(logits - classifier.logits(params, images)))) < 1e-5


@pytest.mark.parametrize("override, message", [
    ("problems/0/kwargs/members/1/kwargs/hidden=[0]",
     "problems/0/kwargs/members/1/kwargs/hidden: must be a non-empty list of positive ints"),
    ("problems/0/kwargs/members/0/kwargs/layrs=[3]",
     "problems/0/kwargs/members/0/kwargs/layrs: unknown key; did you mean 'layers'?"),
    ("problems/0/kwargs/members/0/kwargs/image_size=0",
     "problems/0/kwargs/members/0/kwargs/image_size: must be null or a positive int"),
    ("problems/0/kwargs/members/2/kwargs/condition_number=0.5",
     "problems/0/kwargs/members/2/kwargs/condition_number: must be null or a finite number"),
    ("problems/0/kwargs/members/1/kwargs/noise=-1",
     "problems/0/kwargs/members/1/kwargs/noise: must be finite and non-negative"),
    ("problems/0/kwargs/members/2/kwargs/loss_scale=0",
     "problems/0/kwargs/members/2/kwargs/loss_scale: must be above 0.0"),
    ("problems/0/kwargs/members/2/target=quadratc",
     "problems/0/kwargs/members/2/target: unknown value 'quadratc'; did you mean 'quadratic'?"),
    ("problems/0/kwargs/members/2/target=task_family",
     "problems/0/kwargs/members/2/target: a member is one task, not a task_family"),
    ("problems/0/kwargs/members=[]", "problems/0/kwargs/members: must be a non-empty list"),
    ("problems/0/kwargs/weights=[1,2]", "problems/0/kwargs/weights: must be null or 3 non-neg"),
    ("problems/0/kwargs/weights=[0,0,0]", "problems/0/kwargs/weights: must be null or 3 non-neg"),
    ("problems/0/kwargs/member=3", "problems/0/kwargs/member: must be null or a member's index"),
])
def test_config_errors_name_the_nested_key(override, message):
    with pytest.raises(ConfigError) as raised:
        resolve(family_config("unused"), [override])
    assert str(raised.value).startswith(message), str(raised.value)


def test_data_errors_of_a_member_name_its_key():
    spec = family_spec([MEMBERS[0], {"target": "mlp_classifier",
                                     "kwargs": {"dataset": "moons", "image_size": 8}}])
    with pytest.raises(ConfigError, match="^problems/0/kwargs/members/1/kwargs/image_size: "
                                          "'moons' holds points, not images"):
        build(spec)
