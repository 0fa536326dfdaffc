"""Artifact scans on real files: malicious pickles never run, unsafe archives and untrusted types
are refused with a message naming the problem, and every supported format's own files pass."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import skops.io
import xgboost as xgb
import yaml
from onnx import TensorProto, helper
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mlgov.artifacts import (
    ArtifactRejected,
    ScanPolicy,
    ScanReport,
    load_model,
    scan_artifact,
    scan_or_raise,
)
from mlgov.artifacts.scan import NO_LOADER, PICKLE_REFUSED

FIXTURES = Path(__file__).parent / "fixtures" / "artifacts"
MLFLOW_ZIP = FIXTURES / "mlflow_sklearn_skops.zip"


# -- malicious pickles ----------------------------------------------------------------------------


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


class _Popen:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (subprocess.Popen, (["touch", str(self.marker)],))


MALICIOUS = [
    pytest.param(_System, ("posix.system", "os.system"), id="os.system"),
    pytest.param(_Eval, ("builtins.eval",), id="builtins.eval"),
    pytest.param(_Exec, ("builtins.exec",), id="builtins.exec"),
    pytest.param(_Popen, ("subprocess.Popen",), id="subprocess.Popen"),
]


def _evil_bytes(cls: type, marker: Path) -> bytes:
    return pickle.dumps(cls(marker))


def _names_one_of(message: str, imports: tuple[str, ...]) -> bool:
    return any(f"imports {name}" in message for name in imports)


@pytest.mark.parametrize(("cls", "imports"), MALICIOUS)
@pytest.mark.parametrize("allow_pickle", [False, True])
def test_malicious_pickle_is_rejected_and_never_runs(
    tmp_path: Path, cls: type, imports: tuple[str, ...], allow_pickle: bool
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(_evil_bytes(cls, marker))

    report = scan_artifact(path, "pickle", ScanPolicy(allow_pickle=allow_pickle))

    assert not report.passed
    assert report.message().startswith("the artifact would execute code when loaded: model.pkl")
    assert _names_one_of(report.message(), imports), report.message()
    assert report.findings[0].severity == "dangerous"
    refused = [f for f in report.findings if f.detail == PICKLE_REFUSED]
    assert bool(refused) is not allow_pickle
    assert not marker.exists()


@pytest.mark.parametrize(("cls", "imports"), MALICIOUS)
def test_load_model_refuses_a_malicious_pickle_before_loading(
    tmp_path: Path, cls: type, imports: tuple[str, ...]
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(_evil_bytes(cls, marker))

    with pytest.raises(ArtifactRejected) as caught:
        load_model(path, "pickle", ScanPolicy(allow_pickle=True))

    assert _names_one_of(str(caught.value), imports)
    assert not caught.value.report.passed
    assert not marker.exists()


def test_malicious_pickle_in_an_mlflow_sklearn_model(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    archive = _mlflow_zip(
        tmp_path / "model.zip",
        {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "pickle"}},
        {"model.pkl": _evil_bytes(_System, marker)},
    )

    report = scan_artifact(archive, "mlflow", ScanPolicy(allow_pickle=True))

    assert not report.passed
    assert report.message() == (
        "the artifact would execute code when loaded: model/model.pkl imports posix.system"
    )
    with pytest.raises(ArtifactRejected):
        load_model(archive, "mlflow", ScanPolicy(allow_pickle=True))
    assert not marker.exists()


def test_pickle_member_hidden_in_a_skops_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.skops"
    skops.io.dump(_fitted_logreg(), path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("payload.pkl", _evil_bytes(_System, marker))

    report = scan_artifact(path, "skops")

    assert not report.passed
    assert report.message() == (
        "the artifact would execute code when loaded: payload.pkl imports posix.system"
    )
    assert any(f.detail == "a skops file never contains pickles" for f in report.findings)
    with pytest.raises(ArtifactRejected):
        load_model(path, "skops")
    assert not marker.exists()


def test_pickle_saved_as_xgboost_or_lightgbm_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.json"
    path.write_bytes(_evil_bytes(_System, marker))

    for fmt, native in (("xgboost", "xgboost"), ("lightgbm", "LightGBM")):
        report = scan_artifact(path, fmt)
        assert not report.passed
        assert any(f.detail == f"pickle, not the {native} native format" for f in report.findings)
        assert "imports posix.system" in report.message()
    assert not marker.exists()


def test_other_format_still_fails_a_malicious_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "blob.bin"
    path.write_bytes(pickle.dumps(_Eval(marker), protocol=0))  # no pickle header at all

    report = scan_artifact(path, "other")

    assert not report.passed
    assert "imports __builtin__.eval" in report.message()  # protocol 0 names it so
    assert not marker.exists()


# -- plain pickle policy --------------------------------------------------------------------------


def test_benign_pickle_is_refused_by_default_and_accepted_by_policy(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_fitted_logreg()))

    refused = scan_artifact(path, "pickle")
    assert not refused.passed
    assert refused.findings == (refused.findings[0].__class__("refused", "", PICKLE_REFUSED),)
    assert refused.message() == f"the artifact was refused: model.pkl: {PICKLE_REFUSED}"

    allowed = scan_artifact(path, "pickle", ScanPolicy(allow_pickle=True))
    assert allowed.passed
    assert allowed.findings == ()
    assert allowed.tools["picklescan"]


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80\x04not a pickle at all", pickle.dumps([1, 2, 3])[:-3], b"\x80\x04N.trailing"],
    ids=["empty", "garbage", "truncated", "trailing-garbage"],
)
def test_malformed_pickle_is_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(data)

    report = scan_artifact(path, "pickle", ScanPolicy(allow_pickle=True))

    assert not report.passed
    assert "not a well-formed pickle stream" in report.message()


def test_joblib_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    import joblib  # type: ignore[import-untyped]

    path = tmp_path / "model.joblib"
    joblib.dump(_fitted_logreg(), path)

    report = scan_artifact(path, "pickle", ScanPolicy(allow_pickle=True))

    assert not report.passed
    assert "save the model with skops" in report.message()


# -- skops ----------------------------------------------------------------------------------------


def test_skops_model_passes(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    skops.io.dump(make_pipeline(StandardScaler(), _fitted_logreg()), path)

    report = scan_artifact(path, "skops")

    assert report.passed, report.message()
    assert report.tools["skops"] == skops.__version__
    assert "schema.json" in report.members


def test_skops_untrusted_function_is_rejected_unless_an_admin_trusts_it(tmp_path: Path) -> None:
    import operator

    X, y = _data()
    path = tmp_path / "model.skops"
    skops.io.dump(
        make_pipeline(FunctionTransformer(operator.neg), LogisticRegression()).fit(X, y), path
    )

    rejected = scan_artifact(path, "skops")
    assert not rejected.passed
    assert rejected.findings[0].severity == "untrusted"
    assert "skops type not trusted: _operator.neg" in rejected.message()
    assert "artifacts.trusted_types" in rejected.message()

    trusted = scan_artifact(path, "skops", ScanPolicy(trusted_types=("_operator.neg",)))
    assert trusted.passed, trusted.message()


def test_skops_custom_type_is_rejected_without_importing_it(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    skops.io.dump(_fitted_logreg(), path)
    _rewrite_schema(path, lambda s: {**s, "__class__": "Backdoor", "__module__": "evil_mod_xyz"})

    report = scan_artifact(path, "skops")

    assert not report.passed
    assert "skops type not trusted: evil_mod_xyz.Backdoor" in report.message()
    assert scan_artifact(path, "skops", ScanPolicy(trusted_types=("evil_mod_xyz.Backdoor",))).passed


def test_corrupt_skops_files_are_refused(tmp_path: Path) -> None:
    not_zip = tmp_path / "a.skops"
    not_zip.write_bytes(b"definitely not a zip")
    no_schema = tmp_path / "b.skops"
    with zipfile.ZipFile(no_schema, "w") as zf:
        zf.writestr("weights.npy", b"\x93NUMPY")
    bad_schema = tmp_path / "c.skops"
    with zipfile.ZipFile(bad_schema, "w") as zf:
        zf.writestr("schema.json", "{not json")

    assert "not a valid skops file" in scan_artifact(not_zip, "skops").message()
    assert "schema.json is missing" in scan_artifact(no_schema, "skops").message()
    assert "not a valid skops file" in scan_artifact(bad_schema, "skops").message()


# -- ONNX -----------------------------------------------------------------------------------------


def _onnx_model(domain: str = "", op: str = "Relu", **initializer: Any) -> onnx.ModelProto:
    nodes = [helper.make_node(op, ["X"], ["Y"], domain=domain)]
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])],
        initializer=[helper.make_tensor("W", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])],
    )
    model = helper.make_model(graph, opset_imports=opsets)
    if "location" in initializer:
        tensor = model.graph.initializer[0]
        tensor.data_location = TensorProto.EXTERNAL
        tensor.ClearField("float_data")
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", initializer["location"]
    return model


def test_onnx_model_passes(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_onnx_model(), path)

    report = scan_artifact(path, "onnx")

    assert report.passed, report.message()
    assert report.tools["onnx"] == onnx.__version__


def test_onnx_custom_operator_domain_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_onnx_model(domain="evil.ops", op="Shell"), path)

    report = scan_artifact(path, "onnx")

    assert not report.passed
    assert "custom operator domain 'evil.ops' is not allowed" in report.message()


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("../../etc/passwd", "escapes the model directory"),
        ("/etc/passwd", "escapes the model directory"),
        ("weights.bin", "a single-file ONNX artifact cannot include"),
    ],
)
def test_onnx_external_data_is_refused_for_single_files(
    tmp_path: Path, location: str, expected: str
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(_onnx_model(location=location).SerializeToString())

    report = scan_artifact(path, "onnx")

    assert not report.passed
    assert expected in report.message()


def test_unparseable_onnx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\xff\xff\xff\xff garbage")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")

    assert "not a valid ONNX model" in scan_artifact(path, "onnx").message()
    assert "not a valid ONNX model" in scan_artifact(empty, "onnx").message()


# -- xgboost and LightGBM -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_xgboost_native_formats_pass(tmp_path: Path, suffix: str) -> None:
    X, y = _data()
    path = tmp_path / f"model{suffix}"
    xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(X, y).save_model(path)
    plain = tmp_path / "stored-without-suffix"
    shutil.copy(path, plain)

    assert scan_artifact(path, "xgboost").passed
    assert scan_artifact(plain, "xgboost").passed


def test_not_xgboost_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"version": [3, 0, 0]}))

    report = scan_artifact(path, "xgboost")

    assert not report.passed
    assert "native JSON or UBJSON" in report.message()


def test_lightgbm_text_model_passes_and_junk_is_refused(tmp_path: Path) -> None:
    import lightgbm as lgb

    X, y = _data()
    path = tmp_path / "model.txt"
    lgb.LGBMClassifier(n_estimators=3, verbose=-1, n_jobs=1).fit(X, y).booster_.save_model(path)
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nversion=v4\n")

    assert scan_artifact(path, "lightgbm").passed
    report = scan_artifact(junk, "lightgbm")
    assert not report.passed
    assert "native text format" in report.message()


# -- MLflow ---------------------------------------------------------------------------------------


def test_real_mlflow_sklearn_skops_fixture_passes() -> None:
    report = scan_artifact(MLFLOW_ZIP, "mlflow")

    assert report.passed, report.message()
    assert "model/MLmodel" in report.members
    assert "model/model.skops" in report.members
    assert report.sha256 == hashlib.sha256(MLFLOW_ZIP.read_bytes()).hexdigest()
    assert {"mlgov", "skops"} <= set(report.tools)


def test_mlflow_model_as_tar_gz_with_the_model_at_the_root(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    with zipfile.ZipFile(MLFLOW_ZIP) as zf:
        zf.extractall(tree)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tree / "model", arcname=".")  # like `tar -C model -czf model.tar.gz .`

    report = scan_artifact(archive, "mlflow")
    assert report.passed, report.message()
    assert "MLmodel" in report.members


def test_mlflow_malicious_cloudpickle_python_model(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    archive = _mlflow_zip(
        tmp_path / "model.zip",
        {
            "python_function": {
                "loader_module": "mlflow.pyfunc.model",
                "python_model": "python_model.pkl",
                "cloudpickle_version": "3.1.0",
            }
        },
        {"python_model.pkl": _evil_bytes(_Popen, marker)},
    )

    report = scan_artifact(archive, "mlflow", ScanPolicy(allow_pickle=True))

    assert not report.passed
    assert report.message() == (
        "the artifact would execute code when loaded: model/python_model.pkl imports "
        "subprocess.Popen"
    )
    details = [f.detail for f in report.findings]
    assert "custom pyfunc code would execute on load: python_model 'python_model.pkl'" in details
    assert any("no flavour mlgov can load" in d for d in details)
    assert not marker.exists()


def test_mlflow_real_cloudpickle_function_is_flagged(tmp_path: Path) -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    secret = 41

    def predict(context: Any, model_input: Any) -> Any:  # pickled by value, with its code
        return model_input + secret

    archive = _mlflow_zip(
        tmp_path / "model.zip",
        {"python_function": {"loader_module": "mlflow.pyfunc.model", "python_model": "m.pkl"}},
        {"m.pkl": cloudpickle.dumps(predict)},
    )

    report = scan_artifact(archive, "mlflow", ScanPolicy(allow_pickle=True))

    assert not report.passed
    assert "imports cloudpickle.cloudpickle." in report.message()


@pytest.mark.parametrize(
    ("pyfunc", "expected"),
    [
        ({"loader_module": "my_company.loader"}, "loader_module 'my_company.loader'"),
        ({"loader_module": "mlflow.sklearn", "code": "code"}, "code directory 'code'"),
    ],
)
def test_mlflow_custom_pyfunc_is_refused(
    tmp_path: Path, pyfunc: dict[str, Any], expected: str
) -> None:
    archive = _mlflow_zip(
        tmp_path / "model.zip",
        {"python_function": pyfunc, **_skops_flavour()},
        {"model.skops": _skops_bytes(tmp_path)},
    )

    report = scan_artifact(archive, "mlflow")

    assert not report.passed
    assert report.message() == (
        "the artifact was refused: model/MLmodel: custom pyfunc code would execute on load: "
        f"{expected}"
    )


def test_mlflow_builtin_pyfunc_loader_is_fine(tmp_path: Path) -> None:
    archive = _mlflow_zip(
        tmp_path / "model.zip",
        {"python_function": {"loader_module": "mlflow.sklearn"}, **_skops_flavour()},
        {"model.skops": _skops_bytes(tmp_path)},
    )

    assert scan_artifact(archive, "mlflow").passed


def test_mlflow_path_traversal_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/MLmodel", yaml.safe_dump({"flavors": _skops_flavour()}))
        zf.writestr("model/model.skops", _skops_bytes(tmp_path))
        zf.writestr("../evil", b"overwrite me")

    report = scan_artifact(archive, "mlflow")

    assert not report.passed
    assert report.message() == (
        "the artifact was refused: the archive: archive member '../evil' escapes the archive "
        "(path traversal)"
    )
    assert not (tmp_path.parent / "evil").exists()


def test_mlflow_data_path_escaping_the_model_directory_is_refused(tmp_path: Path) -> None:
    flavour = {"sklearn": {"pickled_model": "../../etc/passwd", "serialization_format": "skops"}}
    archive = _mlflow_zip(tmp_path / "model.zip", flavour, {})

    report = scan_artifact(archive, "mlflow")

    assert not report.passed
    assert "escapes the model directory" in report.message()


def test_mlflow_symlink_members_are_refused(tmp_path: Path) -> None:
    zipped = tmp_path / "model.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("model/MLmodel", yaml.safe_dump({"flavors": _skops_flavour()}))
        link = zipfile.ZipInfo("model/model.skops")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    tarred = tmp_path / "model.tar"
    with tarfile.open(tarred, "w") as tf:
        info = tarfile.TarInfo("model/MLmodel")
        data = yaml.safe_dump({"flavors": _skops_flavour()}).encode()
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link_info = tarfile.TarInfo("model/model.skops")
        link_info.type = tarfile.SYMTYPE
        link_info.linkname = "/etc/passwd"
        tf.addfile(link_info)

    assert "'model/model.skops' is a symlink" in scan_artifact(zipped, "mlflow").message()
    assert "'model/model.skops' is a link" in scan_artifact(tarred, "mlflow").message()


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/MLmodel", yaml.safe_dump({"flavors": _skops_flavour()}))
        zf.writestr("model/model.skops", b"\0" * (8 * 1024 * 1024))
    assert archive.stat().st_size < 64 * 1024

    report = scan_artifact(archive, "mlflow", max_unpacked_bytes=1024 * 1024)

    assert not report.passed
    assert report.message() == (
        "the artifact was refused: the archive: the archive would unpack to more than 1 MiB "
        "(possible zip bomb)"
    )


def test_corrupt_archive_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("model/MLmodel", yaml.safe_dump({"flavors": _skops_flavour()}))
        zf.writestr("model/model.skops", b"A" * 1000)
    raw = archive.read_bytes()
    archive.write_bytes(raw.replace(b"A" * 1000, b"A" * 999 + b"B"))  # the CRC no longer holds

    report = scan_artifact(archive, "mlflow")

    assert not report.passed
    assert "archive member 'model/model.skops' is corrupt" in report.message()


def test_too_many_members_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(12):
            zf.writestr(f"model/f{i}", b"")

    report = scan_artifact(archive, "mlflow", max_members=10)

    assert "more than 10 members" in report.message()


def test_mlflow_without_a_loadable_flavour_or_mlmodel(tmp_path: Path) -> None:
    torch_only = _mlflow_zip(
        tmp_path / "a.zip", {"pytorch": {"model_data": "data"}}, {"data/model.pth": b"x"}
    )
    no_mlmodel = tmp_path / "b.zip"
    with zipfile.ZipFile(no_mlmodel, "w") as zf:
        zf.writestr("model/model.skops", b"x")
    not_archive = tmp_path / "c.zip"
    not_archive.write_bytes(b"plain bytes")

    assert "no flavour mlgov can load" in scan_artifact(torch_only, "mlflow").message()
    assert "no MLmodel file" in scan_artifact(no_mlmodel, "mlflow").message()
    assert "not a zip or tar archive" in scan_artifact(not_archive, "mlflow").message()


def test_mlflow_xgboost_flavour_rejects_a_foreign_model_class(tmp_path: Path) -> None:
    flavour = {"xgboost": {"data": "model.ubj", "model_class": "os.system"}}
    archive = _mlflow_zip(tmp_path / "model.zip", flavour, {"model.ubj": b"{}"})

    report = scan_artifact(archive, "mlflow")

    assert "model_class 'os.system' is not allowed" in report.message()


# -- other, the report and the API ----------------------------------------------------------------


def test_other_format_passes_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "notes.bin"
    path.write_bytes(os.urandom(4096))

    report = scan_artifact(path, "other")

    assert report.passed
    assert [f.severity for f in report.findings] == ["warning"]
    assert (
        report.message()
        == f"the other artifact passed the scan (1 file examined); warning: {NO_LOADER}"
    )


def test_report_results_and_checks_are_json_evidence(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    archive = _mlflow_zip(
        tmp_path / "model.zip",
        {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}},
        {"model.pkl": _evil_bytes(_System, marker), "extra/notes.txt": b"hi" * 1000},
    )

    report = scan_artifact(archive, "mlflow")
    results = json.loads(json.dumps(report.results()))
    checks = json.loads(json.dumps(report.checks()))

    assert results["passed"] is False
    assert results["sha256"] == report.sha256
    assert results["message"] == report.message()
    assert {
        "severity": "dangerous",
        "member": "model/model.pkl",
        "detail": "imports posix.system",
    } in results["findings"]
    by_name = {c["name"]: c for c in checks}
    pkl = by_name["artifact scan: model/model.pkl"]
    assert pkl["passed"] is False
    assert pkl["value"] == "dangerous"
    assert pkl["threshold"] is None
    assert pkl["details"].startswith("picklescan: dangerous: imports posix.system")
    assert by_name["artifact scan: model/MLmodel"]["passed"] is True
    for check in checks:
        assert set(check) == {"name", "passed", "value", "threshold", "details"}
        assert len(check["details"]) <= 512


def test_scan_or_raise(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))

    with pytest.raises(ArtifactRejected) as caught:
        scan_or_raise(path, "pickle")
    assert isinstance(caught.value.report, ScanReport)
    assert str(caught.value) == caught.value.report.message()
    assert scan_or_raise(path, "pickle", ScanPolicy(allow_pickle=True)).passed


def test_unknown_format_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown artifact format"):
        scan_artifact(path, "tensorflow")


def test_scanning_never_imports_the_model_classes(tmp_path: Path) -> None:
    """A scan runs in a fresh interpreter without importing sklearn's estimators module."""
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_fitted_logreg()))
    code = (
        "import sys; from pathlib import Path;"
        "from mlgov.artifacts import scan_artifact, ScanPolicy;"
        f"r = scan_artifact(Path({str(path)!r}), 'pickle', ScanPolicy(allow_pickle=True));"
        "assert r.passed, r.message();"
        "print('sklearn.linear_model' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# -- helpers --------------------------------------------------------------------------------------


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    return X, y


def _fitted_logreg() -> LogisticRegression:
    X, y = _data()
    return LogisticRegression().fit(X, y)


def _skops_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "tmp-model.skops"
    skops.io.dump(_fitted_logreg(), path)
    return path.read_bytes()


def _skops_flavour() -> dict[str, Any]:
    return {"sklearn": {"pickled_model": "model.skops", "serialization_format": "skops"}}


def _mlflow_zip(path: Path, flavors: dict[str, Any], files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/MLmodel", yaml.safe_dump({"flavors": flavors}))
        for name, data in files.items():
            zf.writestr(f"model/{name}", data)
    return path


def _rewrite_schema(path: Path, change: Any) -> None:
    with zipfile.ZipFile(path) as zf:
        contents = {name: zf.read(name) for name in zf.namelist()}
    schema = change(json.loads(contents["schema.json"]))
    contents["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
