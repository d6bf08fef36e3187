"""The package namespace: optional extras stay optional."""

import subprocess
import sys

import skmlp


def test_public_names():
    assert set(skmlp.__all__) == {"LossCurveDisplay", "MLPTorchClassifier", "MLPTorchRegressor",
                                  "TabularMLPClassifier", "TabularMLPRegressor",
                                  "onnx_inputs", "to_onnx", "__version__"}


def test_import_skmlp_does_not_import_optional_extras():
    code = ("import sys, skmlp; skmlp.to_onnx; skmlp.onnx_inputs; skmlp.LossCurveDisplay; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'onnxscript', 'matplotlib', "
            "'torch.onnx', 'skops', 'dask', 'polars') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
