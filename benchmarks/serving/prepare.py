"""Serving benchmark: train the models in this interpreter and store them where a server
reads them. Run with each tool's interpreter:

    python benchmarks/serving/prepare.py --out DIR [--kinds linear,boosted] \\
        [--tidal-home DIR] [--mlflow]

Trains each model of ``--kinds`` (workload.py: same rows, fixed seeds) and pickles it to
DIR/<kind>.pkl (what floor_app.py and bentoml_service.py load). ``--tidal-home``: also
registers it in that Tidal workspace, as models:/bench/1 (linear) and models:/boosted/1
(boosted), with a 50-row input example. ``--mlflow``: also saves it as an MLflow model in
DIR/mlflow-<kind> (``mlflow.sklearn.save_model`` with exact pip_requirements and the same
input example, so MLflow checks the input against a signature as Tidal does). Prints one JSON
object on stdout: the versions, and per model the checksum of its probabilities and its labels
on the check rows and its in-process predict time on 1 and 64 rows.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import platform
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as w

#: The registered model name of each kind on Tidal's side.
TIDAL_NAMES = {"linear": "bench", "boosted": "boosted"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--kinds", default=",".join(w.KINDS))
    parser.add_argument("--tidal-home", type=Path)
    parser.add_argument("--mlflow", action="store_true")
    args = parser.parse_args()
    kinds = [kind for kind in args.kinds.split(",") if kind]
    args.out.mkdir(parents=True, exist_ok=True)

    import numpy
    import pandas
    import sklearn

    result: dict = {"python": platform.python_version(), "sklearn": sklearn.__version__,
                    "numpy": numpy.__version__, "pandas": pandas.__version__, "models": {}}
    check = w.check_frame()
    example = w.frame(w.EXAMPLE_ROWS, seed=w.SEED + 4)
    ws = None
    if args.tidal_home is not None:
        import tidal

        ws = tidal.workspace(args.tidal_home)
        result["tidal"] = tidal.__version__
    if args.mlflow:
        import mlflow
        import mlflow.sklearn

        warnings.filterwarnings("ignore")
        logging.getLogger("mlflow").setLevel(logging.ERROR)
        result["mlflow"] = mlflow.__version__
    try:
        import bentoml

        result["bentoml"] = bentoml.__version__
    except ImportError:
        pass

    for kind in kinds:
        w.progress("prepare", f"training the {kind} model ({sys.executable})")
        model = w.train(kind)
        path = args.out / f"{kind}.pkl"
        with open(path, "wb") as out:
            pickle.dump(model, out, protocol=pickle.HIGHEST_PROTOCOL)
        entry = {"pickle": str(path),
                 "checksum": w.checksum(model.predict_proba(check)),
                 "labels": [int(label) for label in model.predict(check)],
                 "predict_1_s": w.predict_time(model, 1),
                 "predict_64_s": w.predict_time(model, 64, calls=100)}
        if ws is not None:
            import tidal

            version = tidal.models.register(TIDAL_NAMES[kind], model, input_example=example,
                                            run=False, workspace=ws)
            entry["tidal_uri"] = f"models:/{version.name}/{version.version}"
        if args.mlflow:
            target = args.out / f"mlflow-{kind}"
            mlflow.sklearn.save_model(model, str(target),
                                      pip_requirements=w.pip_requirements(),
                                      input_example=example)
            entry["mlflow_model"] = str(target)
        result["models"][kind] = entry
    w.emit(result)


if __name__ == "__main__":
    main()
