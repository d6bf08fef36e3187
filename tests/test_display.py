"""LossCurveDisplay: scikit-learn's Display API over loss_curve_ / validation_scores_."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skmlp import LossCurveDisplay, MLPTorchClassifier, MLPTorchRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

rng = np.random.RandomState(0)
X = rng.randn(80, 3)
y = X[:, 0] * 2 + X[:, 1]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_loss_only():
    reg = MLPTorchRegressor((8,), max_iter=7, random_state=0).fit(X, y)
    disp = LossCurveDisplay.from_estimator(reg)
    assert disp.ax_val_ is None and disp.lines_ == [disp.line_]
    np.testing.assert_allclose(disp.line_.get_ydata(), reg.loss_curve_)
    np.testing.assert_array_equal(disp.line_.get_xdata(), np.arange(1, 8))
    assert disp.figure_ is disp.ax_.figure
    assert disp.ax_.get_xlabel() == "epoch"
    assert "MLPTorchRegressor" in disp.line_.get_label()


def test_validation_on_twin_axis_and_given_ax():
    clf = MLPTorchClassifier((8,), max_iter=6, early_stopping=True, n_iter_no_change=50,
                             random_state=0).fit(X, X[:, 0] > 0)
    fig, ax = plt.subplots()
    disp = LossCurveDisplay.from_estimator(clf, ax=ax, name="mlp",
                                           validation_kwargs={"linestyle": "--"})
    assert disp.ax_ is ax and disp.figure_ is fig
    assert disp.ax_val_ is not None and disp.ax_val_ is not ax
    assert disp.ax_val_.get_shared_x_axes().joined(ax, disp.ax_val_)
    loss_line, val_line, best_line = disp.lines_
    np.testing.assert_allclose(val_line.get_ydata(), clf.validation_scores_)
    np.testing.assert_allclose(loss_line.get_ydata(), clf.loss_curve_)
    assert val_line.get_linestyle() == "--"
    best = 1 + int(np.argmax(clf.validation_scores_))
    assert best_line is disp.best_line_ and list(best_line.get_xdata()) == [best, best]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "mlp training loss", "validation score", f"weights kept (epoch {best})"]
    # The legend sits below the axes, where it cannot cover a curve.
    fig.canvas.draw()
    legend_box = disp.legend_.get_window_extent()
    assert legend_box.y1 <= ax.get_window_extent().y0
    # the caller's figure keeps its layout; a figure the display makes gets room
    assert fig.subplotpars.bottom == plt.rcParams["figure.subplot.bottom"]
    own = LossCurveDisplay.from_estimator(clf)
    assert own.figure_.subplotpars.bottom == pytest.approx(0.22)
    plt.close(own.figure_)


def test_from_fitted_pipeline_and_search():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), MLPTorchClassifier((8,), max_iter=5, random_state=0))
    pipe.fit(X, X[:, 0] > 0)
    disp = LossCurveDisplay.from_estimator(pipe)
    np.testing.assert_allclose(disp.line_.get_ydata(), pipe[-1].loss_curve_)
    search = GridSearchCV(pipe, {"mlptorchclassifier__max_iter": [3, 4]}, cv=2).fit(
        X, X[:, 0] > 0)
    disp = LossCurveDisplay.from_estimator(search)
    assert len(disp.line_.get_ydata()) == search.best_estimator_[-1].n_iter_


def test_warm_started_validation_scores_end_the_loss_curve():
    clf = MLPTorchClassifier((8,), max_iter=4, random_state=0).fit(X, X[:, 0] > 0)
    clf.set_params(warm_start=True, early_stopping=True, max_iter=3, n_iter_no_change=50)
    clf.fit(X, X[:, 0] > 0)
    disp = LossCurveDisplay.from_estimator(clf)
    assert list(disp.lines_[1].get_xdata()) == [5, 6, 7]


def test_plot_again_from_stored_data():
    disp = LossCurveDisplay([3.0, 2.0, 1.5], [0.5, 0.7, 0.6], estimator_name="m")
    disp.plot()
    first = disp.figure_
    _, ax = plt.subplots()
    disp.plot(ax=ax, name="other", loss_kwargs={"color": "k"})
    assert disp.ax_ is ax and disp.figure_ is not first
    assert disp.line_.get_label() == "other training loss" and disp.line_.get_color() == "k"


def test_unfitted_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        LossCurveDisplay.from_estimator(MLPTorchClassifier())
